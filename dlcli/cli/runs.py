"""`dlcli runs` and `dlcli plot`: look at run directories. No logic and no torch import here."""

import os
from typing import Optional

import typer

from dlcli.cli.base import command, emit_json
from dlcli.errors import ConfigError


@command()
def runs(
    directory: Optional[str] = typer.Argument(None, help="runs root (default: $DLCLI_RUNS_DIR, else runs/)"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON on stdout"),
    mlflow: bool = typer.Option(False, "--mlflow", help="list the runs tracked in MLflow instead"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="with --mlflow: this experiment only"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="with --mlflow: the store (default: "
                                               "$MLFLOW_TRACKING_URI, else sqlite:///<runs root>/mlflow.db)"),
):
    """Table of runs: name, version, status, best metric, epochs, time, device."""
    from dlcli.cli.report import print_runs
    from dlcli.runs.rundir import runs_root
    from dlcli.runs.table import collect_runs

    root = runs_root(directory)
    if mlflow:
        from dlcli.cli.report import print_tracked_runs
        from dlcli.training.tracking import tracked_runs
        from dlcli.training.tracking import tracking_uri as default_uri

        uri = default_uri(tracking_uri, root)
        tracked = tracked_runs(uri, experiment)
        emit_json(tracked) if as_json else print_tracked_runs(tracked, uri)
        return
    if experiment or tracking_uri:
        raise ConfigError("--experiment and --tracking-uri go with --mlflow")
    if not os.path.isdir(root):
        raise ConfigError(f"runs folder not found: {root}")
    rows = collect_runs(root)
    emit_json(rows) if as_json else print_runs(rows, root)


@command()
def plot(
    run_dirs: list[str] = typer.Argument(..., help="run directories to compare"),
    metric: str = typer.Option("val/acc", "--metric", help="metric to plot per epoch"),
    output: str = typer.Option("curves.png", "--output", "-o", help="image file to write (.png, .pdf, .svg)"),
):
    """Plot one metric of several runs on one figure."""
    from dlcli.runs.paths import writable_output
    from dlcli.runs.plots import plot_runs

    if not output.endswith((".png", ".pdf", ".svg")):
        raise ConfigError(f"--output: expected a .png, .pdf or .svg file name (got {output!r})")
    writable_output(output, "--output")
    plot_runs(run_dirs, metric, output)
    typer.echo(f"wrote {output}", err=True)
