"""`dlcli infer`: parse, call, show. No logic and no torch import here."""

from collections.abc import Callable
from typing import Any, Optional

import typer

from dlcli.cli.base import command, emit_json
from dlcli.errors import ConfigError


@command()
def infer(
    checkpoint: str = typer.Argument(..., help="checkpoint file (or a run directory)"),
    inputs: Optional[list[str]] = typer.Argument(None, help="images, folders, CSV/JSONL files, or a series CSV"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1,
                                        help="classes shown per input (default 3); generation: sample from "
                                             "the k likeliest"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="write predictions to .csv or .jsonl"),
    as_json: bool = typer.Option(False, "--json", help="print predictions as JSON on stdout"),
    text: Optional[list[str]] = typer.Option(None, "--text", help="a text to classify (repeatable)"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="language models: the text to continue"),
    length: Optional[int] = typer.Option(None, "--length", min=1, max=1_000_000,
                                         help="language models: tokens to generate (default 200)"),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0, max=100.0,
                                                help="language models: sampling temperature (0 = always the "
                                                     "likeliest; default 1)"),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0,
                                          help="language models: sample from the likeliest tokens whose "
                                               "probabilities add up to p (nucleus sampling)"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**32 - 1,
                                       help="language models and GANs: seed for repeatable output"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=100_000,
                                        help="forecasters: future steps to predict (default: the horizon)"),
    num: Optional[int] = typer.Option(None, "--num", min=1, max=100_000,
                                      help="GANs: how many images to generate (default 64); language "
                                           "models: how many texts (default 1)"),
    label: Optional[int] = typer.Option(None, "--class", min=0, help="conditional GANs: the class to generate"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="GANs: write one PNG per image here"),
    tta: Optional[str] = typer.Option(None, "--tta", help="image classifiers: average over flipped (flip) or "
                                                          "shifted (crops) copies of each image"),
):
    """Predict for new inputs with a checkpoint's own preprocessing: classes, generated text or forecasts."""
    from dlcli.inference.predict import infer as run_infer
    from dlcli.inference.tta import check_choice

    if top_p is not None and top_p <= 0:
        raise ConfigError(f"--top-p: the share of probability mass to sample from must be above 0 (got {top_p:g})")
    from dlcli.runs.paths import writable_folder, writable_output

    options = {"texts": text or [], "prompt": prompt, "length": length, "temperature": temperature,
               "top_p": top_p, "seed": seed, "steps": steps, "num": num, "label": label, "output": output,
               "output_dir": output_dir, "tta": check_choice(tta)}
    if output and not output.endswith((".csv", ".jsonl", ".png")):
        raise ConfigError(f"--output: expected a .csv or .jsonl file name, or .png for a GAN (got {output!r})")
    if output:
        writable_output(output, "--output", reads=[checkpoint, *(inputs or [])])
    if output_dir:
        writable_folder(output_dir, "--output-dir")
    kind, result = run_infer(checkpoint, inputs or [], device, top_k, options)
    show_inference(kind, result, output, as_json)


def generation_rows(result: dict) -> list[dict]:
    """One row per generated text (--num)."""
    if "samples" not in result:
        return [result]
    return [{"prompt": result["prompt"], "sample": i + 1, **s} for i, s in enumerate(result["samples"])]


def show_inference(kind: str, result, output: str | None, as_json: bool) -> None:
    """Generated images are reported; predictions go to --output, JSON on stdout, or a table."""
    from dlcli.cli.report import print_generation, print_predictions, print_rows, write_predictions

    if kind == "images":
        files = result["files"]
        emit_json(result) if as_json else typer.echo(
            f"wrote {result['images']} images: {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}", err=True)
        return
    if output:
        rows = generation_rows(result) if kind == "generation" else result
        write_predictions(rows, output)
        typer.echo(f"wrote {len(rows)} rows to {output}", err=True)
    if as_json:
        emit_json(result)
    elif not output:
        printers: dict[str, Callable[[Any], None]] = {"generation": print_generation, "classes": print_predictions}
        printers.get(kind, print_rows)(result)  # values, forecasts, label sets: a column per field
