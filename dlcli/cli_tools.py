"""Workflow commands on the same `app`: export, sweep, runs, plot, init, schema, list.
Like cli.py: parse, call, map errors; no logic and no torch import here."""

from typing import Optional

import typer

from dlcli.cli_base import _emit_json, _run, app
from dlcli.errors import ConfigError, DlcliError


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="checkpoint file (or a run directory)"),
    fmt: str = typer.Option(..., "--format", help="onnx, torchscript or safetensors"),
    output: str = typer.Option(..., "--output", "-o", help="file to write"),
    tolerance: float = typer.Option(1e-4, "--tolerance", min=0.0, help="largest allowed output difference"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
):
    """Export the model and check the exported file numerically against PyTorch."""

    def action():
        from dlcli.export import export as run_export

        result = run_export(checkpoint, fmt, output, tolerance)
        if as_json:
            _emit_json(result)
        else:
            typer.echo(f"wrote {result['output']} ({fmt}); max abs difference on a sample batch "
                       f"{result['max_abs_diff']:.3g} (tolerance {tolerance:g})")

    _run(action)


@app.command()
def sweep(
    config: str = typer.Argument(..., help="YAML experiment file"),
    axes: list[str] = typer.Argument(..., help="key=v1,v2,... per swept key (commas inside [] stay), "
                                               "or a plain key=value fixed for every run"),
    random_draws: Optional[int] = typer.Option(None, "--random", min=1, help="N random picks from the grid"),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="repeat each point with seed=0..K-1"),
    metric: Optional[str] = typer.Option(None, "--metric", help="sort by this metric (default: train.monitor)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="root for runs"),
    print_commands: bool = typer.Option(False, "--print-commands", help="print one `dlcli train` command "
                                        "per run (for job arrays / GNU parallel) instead of running"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines instead of progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the result rows as JSON on stdout"),
    sweep_seed: int = typer.Option(0, "--sweep-seed", help="seed for --random"),
):
    """Run a grid (or random draws) of overrides; ends with a sorted table and sweep-*.csv."""

    def action():
        import shlex

        from dlcli.progress import Progress
        from dlcli.report import print_sweep
        from dlcli.sweep import expand, run_sweep, validate_all
        from dlcli.tasks import task_class

        combos = expand(axes, random_draws, seeds, sweep_seed)
        if print_commands:
            validate_all(config, combos)  # a job array of bad points would fail one by one, later
            extra = f" --output-dir {shlex.quote(output_dir)}" if output_dir else ""
            for overrides in combos:
                typer.echo(f"dlcli train {shlex.quote(config)} {' '.join(map(shlex.quote, overrides))}{extra}")
            return
        rows, csv_path, sorted_by = run_sweep(config, combos, metric, output_dir,
                                              lambda cfg: Progress(cfg.train.epochs, quiet,
                                                                   shown=task_class(cfg.task).progress_metrics()))
        _emit_json(rows) if as_json else print_sweep(rows, csv_path, sorted_by)
        failed = [r for r in rows if r["status"] != "finished"]
        if failed:
            raise DlcliError(f"{len(failed)} of {len(rows)} sweep runs failed (see the table and {csv_path})")

    _run(action)


@app.command()
def runs(
    directory: Optional[str] = typer.Argument(None, help="runs root (default: $DLCLI_RUNS_DIR, else runs/)"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON on stdout"),
):
    """Table of runs: name, version, status, best metric, epochs, time, device."""

    def action():
        import os

        from dlcli.report import print_runs
        from dlcli.run_table import collect_runs
        from dlcli.runs import runs_root

        root = runs_root(directory)
        if not os.path.isdir(root):
            raise ConfigError(f"runs folder not found: {root}")
        rows = collect_runs(root)
        _emit_json(rows) if as_json else print_runs(rows, root)

    _run(action)


@app.command()
def plot(
    run_dirs: list[str] = typer.Argument(..., help="run directories to compare"),
    metric: str = typer.Option("val/acc", "--metric", help="metric to plot per epoch"),
    output: str = typer.Option("curves.png", "--output", "-o", help="image file to write (.png, .pdf, .svg)"),
):
    """Plot one metric of several runs on one figure."""

    def action():
        from dlcli.paths import writable_output
        from dlcli.plots import plot_runs

        if not output.endswith((".png", ".pdf", ".svg")):
            raise ConfigError(f"--output: expected a .png, .pdf or .svg file name (got {output!r})")
        writable_output(output, "--output")
        plot_runs(run_dirs, metric, output)
        typer.echo(f"wrote {output}", err=True)

    _run(action)


@app.command()
def init(
    model: str = typer.Option("mlp", "--model", help="mlp, cnn or sequential"),
    dataset: str = typer.Option("digits", "--dataset", help="digits, mnist, fashion_mnist, cifar10, cifar100, "
                                                          "image_folder or csv"),
):
    """Print a commented starting config, e.g. dlcli init --model cnn --dataset cifar10 > my.yaml."""

    def action():
        from dlcli.init_config import starting_config

        typer.echo(starting_config(model, dataset), nl=False)

    _run(action)


@app.command()
def schema():
    """Print the JSON Schema of experiment files (for editor completion and checking)."""

    def action():
        from dlcli.config.jsonschema import config_schema

        _emit_json(config_schema())

    _run(action)


@app.command("list")
def list_components(kind: Optional[str] = typer.Argument(None, help="models, datasets, transforms, losses, "
                                                                     "optimizers, schedulers, callbacks")):
    """List registered components with their parameters and defaults."""

    def action():
        from dlcli.report import print_registry

        print_registry(kind)

    _run(action)
