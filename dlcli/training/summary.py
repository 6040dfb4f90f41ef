"""How a run ended, in summary.json: written however it ended, and never at the cost of the error
that ended it (a disk that is full fails the summary and the plot too)."""

from dlcli.errors import DlcliError, Interrupted, unexpected
from dlcli.runs.rundir import plot_curves


def outcome(err: BaseException) -> tuple[str, str, BaseException]:
    """(status, error, failure) of a run that `err` ended; the error is the line the command prints."""
    status = "interrupted" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "failed"
    return status, describe(err), err


def describe(err: BaseException) -> str:
    """One line for `err`, as cli/base.py prints it."""
    if isinstance(err, DlcliError):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if isinstance(err, MemoryError):
        return "out of memory"
    if isinstance(err, OSError):
        return f"{str(err.filename) + ': ' if err.filename else ''}{err.strerror or err}"
    return unexpected(err) if isinstance(err, Exception) else type(err).__name__


def summary(trainer, run, metrics, status, error, seconds) -> dict:
    return {
        "status": status,
        "error": error,
        "name": trainer.config.name,
        "run_dir": str(run.path),
        "epochs": trainer.state.epoch,
        "steps": trainer.state.step,
        "skipped_batches": trainer.state.skipped_batches,
        "seconds": round(seconds, 2),
        "device": str(trainer.device),
        "precision": trainer.precision,
        "monitor": trainer.monitor,
        "best": {"value": trainer.state.best, "epoch": trainer.state.best_epoch},
        **({"ema": trainer.ema.describe()} if trainer.ema is not None else {}),
        "final": metrics,
        "checkpoints": {name: (str(run.checkpoints / f"{name}.pt") if (run.checkpoints / f"{name}.pt").exists()
                               else None) for name in ("last", "best", "final", *(("swa",) if trainer.swa else ()))},
    }


def write_up(run, summary: dict, failure: BaseException | None, progress) -> None:
    """Close the metrics log, write summary.json, plot curves.png: each is tried. After a failure
    (`failure`, being raised) one that fails too is a warning, so the first error stays the one
    reported; after a success the first that fails is raised, once all were tried."""
    if failure is not None:
        # for `train --json`, which prints it on failure too (cli/train.py reads it with getattr); an
        # ad-hoc attribute on whatever was raised, KeyboardInterrupt included
        setattr(failure, "summary", summary)  # noqa: B010
    steps = (("metrics.jsonl", run.close), ("summary.json", lambda: run.write_summary(summary)),
             ("curves.png", lambda: _plot(run)))
    errors = []
    for name, step in steps:
        try:
            step()
        except Exception as err:  # noqa: BLE001  reported below: as a warning, or raised after the rest
            errors.append(err)
            if failure is not None:
                progress.message(f"warning: could not write {name}: {describe(err)}")
    if errors and failure is None:
        raise errors[0]


def _plot(run) -> None:
    metrics = run.path / "metrics.jsonl"
    if metrics.exists():
        plot_curves(metrics, run.path / "curves.png")
