"""`dlcli sweep cfg.yaml SPACE... --sampler grid|random|tpe --trials N`: an Optuna study whose trials are
ordinary dlcli runs (training/study.py has the Optuna side, search_space.py the axes). Every point at the
axes' bounds is validated before anything runs; a failing trial is reported and the rest go on; each
epoch's metric goes to the pruner; a stop signal ends the sweep with the signal's exit code, and the
interrupted trial is queued again to resume its run directory when the sweep (or another worker) goes on."""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlcli.errors import ConfigError, DlcliError, Interrupted, first_line, unexpected
from dlcli.training import study as studies
from dlcli.training import tracking
from dlcli.training.search_space import Axis, edge_points, grid_points, validate_points


@dataclass
class Plan:
    """A checked sweep: what to run, how many trials, and where its outputs go."""

    config_path: str
    axes: list[Axis]
    fixed: list[str]
    sampler: str
    trials: int
    metric: str
    direction: str
    study: str
    folder: Path
    epochs: int
    grid: list[list[str]] | None = None
    output_dir: str | None = None
    configs: list = field(default_factory=list)


def plan(config_path: str, axes: list[Axis], fixed: list[str], sampler: str | None, trials: int | None,
         metric: str | None, study: str | None, storage: str | None, output_dir: str | None) -> Plan:
    """Check the whole sweep (every grid point, or every axis at its bounds) before anything runs."""
    from dlcli.tasks import task_class
    from dlcli.training.session import runs_root

    sampler = sampler or ("grid" if all(a.finite for a in axes) else "tpe")
    ranges = [a for a in axes if not a.finite]
    grid = grid_points(axes) if sampler == "grid" and not ranges else None
    configs = validate_points(config_path, fixed, grid if grid is not None else edge_points(axes))
    if any(tracking.settings(c) for c in configs):
        tracking.require_mlflow()
    if sampler == "grid" and ranges:
        raise ConfigError(f"--sampler grid: {ranges[0].key}: {ranges[0].describe()} has no grid; "
                          f"use --sampler random or tpe")
    if grid is not None:
        if trials is not None and trials > len(grid):
            raise ConfigError(f"--trials {trials}: the grid has only {len(grid)} points")
        trials = trials or len(grid)
    elif trials is None:
        raise ConfigError(f"--sampler {sampler} needs --trials N (how many trials the study runs in all)")
    metric = metric or configs[0].train.monitor
    _check_metric(metric, configs)
    name = configs[0].name
    study = studies.check_study_name(study or (name if storage else f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"))
    folder = Path(runs_root(output_dir, configs[0])) / name / f"sweep-{study}"
    direction = {"min": "minimize", "max": "maximize"}[task_class(configs[0].task).metric_mode(metric)]
    return Plan(config_path, axes, fixed, sampler, trials, metric, direction, study, folder,
                max(c.train.epochs for c in configs), grid, output_dir, configs)


def _check_metric(metric: str, configs: list) -> None:
    """The metric must be one that some point produces (points may differ, e.g. in val_split)."""
    from dlcli.tasks import known_metrics

    known = sorted({m for c in configs for m in known_metrics(c.task, c.data.val_split > 0, config=c)})
    if metric == "last":  # train.monitor: last (a GAN without gan_eval) names no metric to sort by
        raise ConfigError("--metric: train.monitor is last, which names no metric; give --metric "
                          f"(available: {', '.join(known)})")
    if metric not in known:
        raise ConfigError(f"--metric: unknown metric {metric!r}; available: {', '.join(known)}")


def open_plan_study(p: Plan, storage: str | None, pruner: str, startup: int, seed: int | None):
    store = studies.storage(storage)
    signature = {"search space": [a.describe() for a in p.axes] + p.fixed, "metric": p.metric,
                 "sampler": p.sampler, "config": str(Path(p.config_path).resolve())}
    return studies.open_study(p.study, store, studies.sampler(p.sampler, seed, p.grid),
                              studies.pruner(pruner, startup, p.epochs), p.direction, signature)


def execute(p: Plan, study, progress_factory, say) -> tuple[list[dict], list[str]]:
    """Run the trials, then write the sweep's outputs from the whole study (a stop signal too leaves
    them); returns (rows, notes). With MLflow on, the trials are children of the sweep's run."""
    from dlcli.training import sweep_report
    from dlcli.training.sweep_tracking import SweepRun

    parent = SweepRun(p, study, say)
    interrupted = True
    try:
        run_trials(p, study, progress_factory, say, parent.run_id)
        interrupted = False
    finally:
        rows = sweep_report.rows(study, p.metric, p.direction)
        sweep_report.write_csv(rows, p.folder / "trials.csv")
        best = sweep_report.write_best(rows, p.config_path, p.fixed, p.metric, p.folder / "best.yaml")
        notes = sweep_report.write_plots(study, p.folder) + ([f"best config: {best}"] if best else [])
        parent.finish(p.folder, sweep_report.best_row(rows, p.metric), p.metric, interrupted)
    return rows, notes


def run_trials(p: Plan, study, progress_factory, say, parent: str | None = None) -> int:
    """Run trials until the study has `p.trials` of them; returns how many this process ran.
    A stop signal between trials ends the sweep too (before the next trial starts)."""
    from dlcli.training.signals import StopSignals

    ran = 0
    with StopSignals() as signals:
        while (trial := studies.next_trial(study, p.trials)) is not None:
            run_trial(p, study, trial, progress_factory, say, parent)
            ran += 1
            if signals.received:
                raise Interrupted(f"sweep stopped by {signals.name} between trials", signals.received)
    return ran


def suggest(p: Plan, trial) -> list[str]:
    """The trial's overrides, drawn by the sampler (or fixed, for a trial queued again)."""
    point = []
    for axis in p.axes:
        if axis.finite:
            value = trial.suggest_categorical(axis.key, list(axis.values))
        elif axis.kind == "int":
            value = trial.suggest_int(axis.key, *axis.values)
        else:
            value = trial.suggest_float(axis.key, *axis.values, log=axis.kind == "loguniform")
        point.append(axis.text(value))
    return point


def run_trial(p: Plan, study, trial, progress_factory, say, parent: str | None = None) -> None:
    """One trial: an ordinary `dlcli train` run, its outcome told to the study."""
    from optuna.trial import TrialState

    from dlcli.config import load
    from dlcli.training.session import train, train_command

    point = suggest(p, trial)
    resume = trial.user_attrs.get("dlcli_resume")
    trial.set_user_attr("point", point)
    say(f"trial {trial.number}: {' '.join(point) or '(no swept keys)'}" + (f" (resuming {resume})" if resume else ""))
    summary: dict = {}
    try:
        config = load(p.config_path, p.fixed + point)
        summary = train(config, p.output_dir, None, progress_factory(config), resume=resume,
                        command=train_command(p.config_path, p.fixed + point), on_epoch=Reporter(trial, p.metric),
                        mlflow_parent=parent)
    except Interrupted as err:
        _record(trial, getattr(err, "summary", {}), "interrupted", first_line(err))
        run_dir = getattr(err, "summary", {}).get("run_dir")
        study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"dlcli_requeued_from": trial.number,
                                                      **({"dlcli_resume": run_dir} if run_dir else {})})
        raise
    except DlcliError as err:
        _failed(study, trial, getattr(err, "summary", summary), first_line(err))
        return
    except Exception as err:  # noqa: BLE001  a bug in one trial must not cost the others their runs
        _failed(study, trial, getattr(err, "summary", summary), unexpected(err))
        return
    value = metric_value(summary, p.metric)
    _record(trial, summary, summary["status"], None)
    trial.set_user_attr("value", value)
    if summary["status"] == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    elif value is None or not math.isfinite(value):
        _failed(study, trial, summary, f"{p.metric} was not produced (got {value})")
    else:
        study.tell(trial, value)


def _failed(study, trial, summary: dict, error: str) -> None:
    from optuna.trial import TrialState

    _record(trial, summary, "failed", error)
    study.tell(trial, state=TrialState.FAIL)


def _record(trial, summary: dict, status: str, error: str | None) -> None:
    """What the table shows, kept in the study so every worker (and a restart) sees it."""
    trial.set_user_attr("dlcli_status", status)
    trial.set_user_attr("run_dir", summary.get("run_dir"))
    trial.set_user_attr("epochs", summary.get("epochs"))
    trial.set_user_attr("error", error)


class Reporter:
    """Each epoch's metric to the trial; True (stop: pruned) when the pruner says so."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric

    def __call__(self, epoch: int, metrics: dict) -> bool:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return False
        self.trial.report(float(value), epoch)
        return self.trial.should_prune()


def metric_value(summary: dict, metric: str):
    """The best value when the metric is the monitored one, else the last epoch's."""
    if summary.get("monitor") == metric and summary["best"]["value"] is not None:
        return summary["best"]["value"]
    return summary["final"].get(metric)
