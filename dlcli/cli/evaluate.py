"""`dlcli eval`: parse, call, report. No logic and no torch import here."""

from typing import Optional

import typer

from dlcli.cli.base import command, emit_json
from dlcli.errors import ConfigError


@command("eval")
def evaluate(
    checkpoint: str = typer.Argument(..., help="checkpoint file (or a run directory)"),
    overrides: Optional[list[str]] = typer.Argument(None, help="config overrides, e.g. data.dataset.root=/data"),
    split: str = typer.Option("test", "--split", help="test or val"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    confusion: bool = typer.Option(False, "--confusion", help="also print the confusion matrix"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON on stdout"),
    features: Optional[str] = typer.Option(None, "--features",
                                           help="GANs: a dlcli image classifier checkpoint for FD / IS / coverage"),
    tta: Optional[str] = typer.Option(None, "--tta", help="image classifiers: average over flipped (flip) or "
                                                          "shifted (crops) copies of each image"),
):
    """Evaluate a checkpoint on its dataset's test (or val) split."""
    from dlcli.cli.report import print_eval
    from dlcli.inference.evaluate import evaluate_checkpoint
    from dlcli.inference.tta import check_choice

    if split not in ("test", "val"):
        raise ConfigError(f"--split: expected test or val (got {split!r})")
    result = evaluate_checkpoint(checkpoint, split, overrides or [], device, features, check_choice(tta))
    emit_json(result) if as_json else print_eval(result, confusion)
