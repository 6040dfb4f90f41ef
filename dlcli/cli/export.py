"""`dlcli export`: parse, call, report. No logic and no torch import here."""

import typer

from dlcli.cli.base import command, emit_json


@command()
def export(
    checkpoint: str = typer.Argument(..., help="checkpoint file (or a run directory)"),
    fmt: str = typer.Option(..., "--format", help="onnx, torchscript or safetensors"),
    output: str = typer.Option(..., "--output", "-o", help="file to write"),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="largest allowed output difference"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
):
    """Export the model and check the exported file numerically against PyTorch."""
    from dlcli.inference.export import export as run_export

    result = run_export(checkpoint, fmt, output, tolerance)
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"wrote {result['output']} ({fmt}); max abs difference on a sample batch "
                   f"{result['max_abs_diff']:.3g} (tolerance {tolerance:g})")
