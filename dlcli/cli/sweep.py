"""`dlcli sweep`: parse, call, report. No logic and no torch import here."""

import shlex
from typing import Optional

import typer

from dlcli.cli.base import command, emit_json
from dlcli.errors import DlcliError


@command()
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
    from dlcli.cli.progress import Progress
    from dlcli.cli.report import print_sweep
    from dlcli.tasks import task_class
    from dlcli.training.sweep import expand, run_sweep, validate_all

    combos = expand(axes, random_draws, seeds, sweep_seed)
    if print_commands:
        validate_all(config, combos)  # a job array of bad points would fail one by one, later
        extra = f" --output-dir {shlex.quote(output_dir)}" if output_dir else ""
        for overrides in combos:
            typer.echo(f"dlcli train {shlex.quote(config)} {' '.join(map(shlex.quote, overrides))}{extra}")
        return
    rows, csv_path, sorted_by = run_sweep(config, combos, metric, output_dir,
                                          lambda cfg: Progress(cfg.train.epochs, quiet,
                                                               shown=task_class(cfg.task).progress_metrics(),
                                                               unit=task_class(cfg.task).eval_unit))
    emit_json(rows) if as_json else print_sweep(rows, csv_path, sorted_by)
    failed = [r for r in rows if r["status"] != "finished"]
    if failed:
        raise DlcliError(f"{len(failed)} of {len(rows)} sweep runs failed (see the table and {csv_path})")
