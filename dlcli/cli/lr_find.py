"""`dlcli lr-find`: the learning-rate range test on a config's model and data. No torch import here."""

from typing import Optional

import typer

from dlcli.cli.base import OVERRIDES_HELP, command, emit_json
from dlcli.errors import ConfigError


@command("lr-find")
def lr_find(
    config: str = typer.Argument(..., help="YAML experiment file"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    lr_min: float = typer.Option(1e-7, "--min", help="first learning rate"),
    lr_max: float = typer.Option(10.0, "--max", help="last learning rate (the test stops where the loss diverges)"),
    steps: int = typer.Option(100, "--steps", min=15, max=100_000, help="optimizer steps, one per learning rate"),
    output: Optional[str] = typer.Option(None, "--output", help="the plot (default: RUNS/<name>/lr_find.png)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="runs root (default: output.dir)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
):
    """Find a learning rate: train briefly with a growing LR and suggest where the loss falls fastest."""
    import os

    from dlcli.config import load
    from dlcli.runs.paths import writable_output
    from dlcli.runs.rundir import runs_root
    from dlcli.training.build import build_trainer
    from dlcli.training.lr_find import lr_range_test, plot

    if not 0 < lr_min < lr_max:
        raise ConfigError(f"--min/--max: need 0 < min < max (got {lr_min:g} and {lr_max:g})")
    cfg = load(config, overrides or [])
    path = writable_output(output or os.path.join(runs_root(output_dir, cfg.output.dir), cfg.name, "lr_find.png"),
                           "--output", reads=[config])
    trainer, _ = build_trainer(cfg)
    result = lr_range_test(trainer, lr_min, lr_max, steps)
    plot(result, path)
    result["plot"] = str(path)
    if as_json:
        emit_json(result)
        return
    ended = "the loss diverged" if result["diverged"] else "the last LR was reached"
    typer.echo(f"ran {result['steps']} steps from lr {lr_min:g} ({ended}); plot: {path}", err=True)
    if result["suggestion"] is None:
        typer.echo(f"no suggestion: the loss diverged after {result['steps']} steps, too few to judge; start lower "
                   f"(--min), end lower (--max) or take more steps (--steps)", err=True)
        raise typer.Exit(1)
    typer.echo(f"suggested lr: {result['suggestion']:.3g}   (use: optimizer.lr={result['suggestion']:.3g})")
