"""`dlcli sweep`: parse, call, report. No logic, no torch and no Optuna import here."""

import shlex
from typing import Optional

import typer

from dlcli.cli.base import command, emit_json
from dlcli.errors import ConfigError, DlcliError


@command()
def sweep(
    config: str = typer.Argument(..., help="YAML experiment file"),
    axes: list[str] = typer.Argument(..., help="search space per key: a,b,c (a grid axis; commas inside [] stay), "
                                               "choice(a,b), uniform(lo,hi), loguniform(lo,hi), int(lo,hi); "
                                               "or a plain key=value fixed for every trial"),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="grid | random | tpe (default: grid when every "
                                                                  "axis is a list, else tpe)"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="trials in the whole study, over all "
                                         "workers (default for grid: every point)"),
    metric: Optional[str] = typer.Option(None, "--metric", help="optimize this metric (default: train.monitor)"),
    pruner: str = typer.Option("none", "--pruner", help="median | hyperband | none: stop poor trials early"),
    startup: int = typer.Option(5, "--pruner-startup", min=0, help="median pruner: trials to finish before "
                                "it prunes"),
    study: Optional[str] = typer.Option(None, "--study", help="study name (workers sharing --storage use one)"),
    storage: Optional[str] = typer.Option(None, "--storage", help="journal:PATH or a database URL "
                                          "(sqlite:///sweep.db); default in memory"),
    random_draws: Optional[int] = typer.Option(None, "--random", hidden=True),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="add the grid axis seed=0..K-1"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="root for runs"),
    print_commands: bool = typer.Option(False, "--print-commands", help="grid only: print one `dlcli train` "
                                        "command per point (for job arrays / GNU parallel) instead of running"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines instead of progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the trials as JSON on stdout"),
    sweep_seed: Optional[int] = typer.Option(None, "--sweep-seed", help="seed for the random/tpe sampler "
                                             "(one worker; leave it out with several)"),
):
    """Search hyperparameters with Optuna; ends with a sorted table, trials.csv and best.yaml."""
    from dlcli.cli.progress import Progress
    from dlcli.cli.report import print_sweep
    from dlcli.tasks import task_class
    from dlcli.training import study as studies
    from dlcli.training import sweep as sweeps
    from dlcli.training import sweep_report
    from dlcli.training.search_space import parse_space

    _check_choices(sampler, pruner, random_draws)
    space, fixed = parse_space(axes, seeds)
    p = sweeps.plan(config, space, fixed, sampler, trials, metric, study, storage, output_dir)
    if print_commands:
        _print_commands(p, output_dir)
        return
    studies.optuna()  # the install line, before any storage is touched
    the_study = sweeps.open_plan_study(p, storage, pruner, startup, sweep_seed)
    say = (lambda line: typer.echo(line, err=True))
    rows, notes = sweeps.execute(p, the_study, lambda cfg: Progress(cfg.train.epochs, quiet,
                                                                    shown=task_class(cfg.task).progress_metrics(),
                                                                    unit=task_class(cfg.task).eval_unit), say)
    emit_json(sweep_report.public(rows)) if as_json else print_sweep(sweep_report.public(rows),
                                                                     p.folder / "trials.csv", p.metric)
    for line in notes:
        say(line)
    failed = [r for r in rows if r["status"] == "failed"]  # an interrupted trial is queued again: not lost
    if failed:
        raise DlcliError(f"{len(failed)} of {len(rows)} trials failed (see the table and {p.folder})")


def _check_choices(sampler: Optional[str], pruner: str, random_draws: Optional[int]) -> None:
    from dlcli.training.study import PRUNERS, SAMPLERS

    if random_draws is not None:
        raise ConfigError(f"--random was replaced: use --sampler random --trials {random_draws}")
    if sampler is not None and sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner: unknown pruner {pruner!r}; use one of {', '.join(PRUNERS)}")


def _print_commands(p, output_dir: Optional[str]) -> None:
    if p.grid is None:
        raise ConfigError(f"--print-commands lists grid points; for --sampler {p.sampler} start several "
                          f"`dlcli sweep ... --study NAME --storage journal:PATH` workers instead")
    extra = f" --output-dir {shlex.quote(output_dir)}" if output_dir else ""
    for point in p.grid[:p.trials]:
        words = [p.config_path, *p.fixed, *point]
        typer.echo(f"dlcli train {' '.join(map(shlex.quote, words))}{extra}")
