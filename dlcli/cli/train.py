"""`dlcli train`: parse, call, report. No logic and no torch import here."""

import os
import sys
from typing import Optional

import typer

from dlcli.cli.base import OVERRIDES_HELP, command, emit_json
from dlcli.errors import ConfigError, Interrupted
from dlcli.ranks import is_main


@command()
def train(
    config: str = typer.Argument(..., help="YAML experiment file"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="root for runs (default: output.dir)"),
    run_version: Optional[str] = typer.Option(None, "--run-version", help="run folder name (default: v1, v2, ...)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines instead of progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the final summary as JSON on stdout"),
    resume: Optional[str] = typer.Option(None, "--resume", help="RUN_DIR, a checkpoint file, or auto "
                                         "(newest run of this config with a checkpoint; else start fresh)"),
    devices: Optional[int] = typer.Option(None, "--devices", min=1, max=1024,
                                          help="DDP processes on this machine (GPUs, or CPU processes); "
                                               "same as train.devices=N"),
    folds: Optional[int] = typer.Option(None, "--folds", min=2, max=100,
                                        help="k-fold cross-validation: K runs under one folder, then mean ± std"),
):
    """Train a model from a YAML experiment; writes runs/<name>/<version>/."""
    from dlcli.cli.progress import Progress
    from dlcli.cli.report import print_train_summary
    from dlcli.config import load
    from dlcli.tasks import task_class
    from dlcli.training import distributed
    from dlcli.training.session import train as run_training
    from dlcli.training.session import train_command

    if resume is not None and not resume.strip():
        raise ConfigError("--resume: empty value; give RUN_DIR, a checkpoint file, or auto")
    if resume and run_version:
        raise ConfigError("--run-version: a resumed run keeps its own folder; leave one of them out")
    if folds is not None or (resume and _is_cross_validation(resume)):
        if devices:
            raise ConfigError("--folds: cross-validation runs its folds in this process; leave out --devices")
        return _cross_validate(config, overrides or [], folds, output_dir, run_version, resume, quiet, as_json)
    extra = [f"train.devices={devices}"] if devices else []
    cfg = load(config, (overrides or []) + extra)  # every config error is reported once, before any launch
    if cfg.train.devices > 1 and "LOCAL_RANK" not in os.environ:
        code, received = distributed.launch(worker_argv(sys.argv[1:], devices), cfg.train.devices)
        if code != 0:
            raise distributed.launcher_error(code, received, cfg.train.devices)
        return
    main_rank = is_main()
    task = task_class(cfg.task_name)
    progress = Progress(cfg.train.epochs, quiet or not main_rank, None if main_rank else open(os.devnull, "w"),
                        task.progress_metrics(), task.eval_unit)
    try:
        summary = run_training(cfg, output_dir, run_version, progress, resume,
                               train_command(config, overrides or [], devices))
    except BaseException as err:  # noqa: BLE001  re-raised: the command wrapper maps it to its exit code
        partial = getattr(err, "summary", None)
        if as_json and main_rank and partial:
            emit_json(partial)  # scripts get status and error on stdout in exactly these cases
        if main_rank or not isinstance(err, Interrupted):
            raise
        raise typer.Exit(err.exit_code) from None  # rank 0 reports the stop; the other ranks leave quietly
    if main_rank:
        emit_json(summary) if as_json else print_train_summary(summary, progress.last_speed)


def _is_cross_validation(resume: str) -> bool:
    from dlcli.training.folds import FOLDS_FILE

    return os.path.isfile(os.path.join(resume, FOLDS_FILE))


def _cross_validate(config, overrides, folds, output_dir, run_version, resume, quiet, as_json) -> None:
    from dlcli.cli.progress import Progress
    from dlcli.config import load
    from dlcli.tasks import task_class
    from dlcli.training.folds import check_overrides, cross_validate
    from dlcli.training.session import train_command

    check_overrides(overrides)
    cfg = load(config, overrides)
    progress = Progress(cfg.train.epochs, quiet, None, task_class(cfg.task_name).progress_metrics())
    command = train_command(config, overrides) + (f" --folds {folds}" if folds else "")
    result = cross_validate(config, overrides, folds, output_dir, run_version, resume, progress, command)
    if as_json:
        emit_json(result)
        return
    typer.echo(f"cross-validation, {result['folds']} folds: {result['monitor']} {result['mean']:.4g} ± "
               f"{result['std']:.2g} (each fold's best: {', '.join(f'{v:.4g}' for v in result['values'])}); "
               f"{result['run_dir']}/cv.json")


def worker_argv(argv: list[str], devices: int | None) -> list[str]:
    """The workers' command line: `train ...` with --devices N turned into train.devices=N."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--devices":
            skip = True
        elif not arg.startswith("--devices="):
            kept.append(arg)
    return kept + ([f"train.devices={devices}"] if devices else [])
