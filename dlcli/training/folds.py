"""k-fold cross-validation (`dlcli train CONFIG --folds K`): K ordinary runs under one parent folder,
RUNS/<name>/<version>/fold-1 ... fold-K, fold i validating on the i-th of K seeded (stratified) folds
(`data.folds`, `data.fold`); then the mean and spread of each fold's best monitored value, in
cv.json. `--resume PARENT` skips finished folds, resumes the one that was stopped and starts the rest."""

import json
import statistics
from pathlib import Path

from dlcli.errors import ConfigError, Interrupted

FOLDS_FILE = "folds.json"  # written first: marks the parent folder, says how many folds
RESULT_FILE = "cv.json"


def cross_validate(config_path: str, overrides: list[str], folds: int | None, output_dir: str | None,
                   version: str | None, resume: str | None, progress, command: str) -> dict:
    """Train every fold not finished yet; returns the cross-validation result (also in cv.json)."""
    from dlcli.config import load
    from dlcli.runs.rundir import runs_root

    check_overrides(overrides)
    folds = _fold_count(folds, resume)
    # every fold's config is checked before anything is written
    configs = [load(config_path, [*overrides, f"data.folds={folds}", f"data.fold={i}"]) for i in range(folds)]
    parent = _parent(Path(runs_root(output_dir, configs[0].output.dir)) / configs[0].name, version, resume, folds,
                     command)
    try:
        summaries = _train_folds(configs, parent, progress, command)
    except BaseException:
        if resume is None:
            _remove_if_unstarted(parent)
        raise
    return _write_result(parent, summaries)


def _train_folds(configs: list, parent: Path, progress, command: str) -> list[dict]:
    from dlcli.training.session import train

    root, folds = parent.parent, len(configs)  # fold i is ROOT/<parent>/fold-i, wherever the parent lies
    summaries = []
    for i, config in enumerate(configs):
        fold = parent / f"fold-{i + 1}"
        finished = _finished(fold)
        if finished is not None:
            progress.message(f"fold {i + 1}/{folds}: finished before ({fold})")
            summaries.append(finished)
            continue
        progress.message(f"fold {i + 1}/{folds}: {fold}")
        again = str(fold) if (fold / "checkpoints" / "last.pt").is_file() else None
        if again is None:
            _clear_unstarted(fold)
        try:
            summaries.append(train(config, str(root), fold.name, progress, again, command, folder=parent.name))
        except Interrupted as stop:
            raise Interrupted(str(stop), stop.exit_code - 128,
                              hint=f"continue the folds with: {command} --resume {parent}") from None
    return summaries


def _remove_if_unstarted(parent: Path) -> None:
    """A new cross-validation whose first fold failed before its run directory opened (bad data, a
    signal while building) leaves nothing behind: its folder held only folds.json."""
    import contextlib

    if [p.name for p in parent.iterdir()] == [FOLDS_FILE]:
        (parent / FOLDS_FILE).unlink()
        with contextlib.suppress(OSError):
            parent.rmdir()
            parent.parent.rmdir()  # RUNS/<name>, when this made it (only ever removed empty)


def check_overrides(overrides: list[str]) -> None:
    if any(o.startswith(("data.folds=", "data.fold=")) for o in overrides):
        raise ConfigError("--folds: sets data.folds and data.fold for each fold; leave them out of the overrides")


def _fold_count(folds: int | None, resume: str | None) -> int:
    if resume is None:
        if folds is None:
            raise ConfigError("--folds: give the number of folds (2 or more)")
        return folds
    marker = Path(resume) / FOLDS_FILE
    try:
        recorded = json.loads(marker.read_text())["folds"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"--resume: {resume} is not a cross-validation folder (no readable {FOLDS_FILE})") from None
    if folds is not None and folds != recorded:
        raise ConfigError(f"--folds: {resume} was started with --folds {recorded} (got {folds})")
    return recorded


def _parent(root: Path, version: str | None, resume: str | None, folds: int, command: str) -> Path:
    """The parent folder: the one resumed, RUNS/<name>/<version> (new and empty), or the next vN."""
    from dlcli.runs.paths import replaced_atomically
    from dlcli.runs.rundir import next_version

    if resume is not None:
        return Path(resume).absolute()
    if version is not None:
        parent = root / version
        if parent.exists() and any(parent.iterdir()):
            raise ConfigError(f"--run-version: {parent} already exists and is not empty")
        parent.mkdir(parents=True, exist_ok=True)
    else:
        root.mkdir(parents=True, exist_ok=True)
        parent = next_version(root.absolute())
    with replaced_atomically(parent / FOLDS_FILE) as tmp:
        tmp.write_text(json.dumps({"folds": folds, "command": command}) + "\n")
    return parent


def _finished(fold: Path) -> dict | None:
    try:
        summary = json.loads((fold / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("status") == "finished" else None


def _clear_unstarted(fold: Path) -> None:
    """A fold stopped before its first checkpoint has nothing to resume: its folder starts over
    (unless a live process holds it: then its lock's one-line error)."""
    import shutil

    from dlcli.runs import lock as run_lock

    who = run_lock.holder(fold) if fold.is_dir() else None
    if who is not None:
        raise run_lock.busy(fold, who)
    if fold.is_dir():
        shutil.rmtree(fold)


def _write_result(parent: Path, summaries: list[dict]) -> dict:
    from dlcli.runs.paths import replaced_atomically

    values = [s["best"]["value"] for s in summaries]
    result = {"status": "finished", "run_dir": str(parent), "folds": len(summaries), "monitor": summaries[0]["monitor"],
              "values": values, "mean": statistics.fmean(values),
              "std": statistics.stdev(values) if len(values) > 1 else 0.0,
              "best_epochs": [s["best"]["epoch"] for s in summaries], "runs": [s["run_dir"] for s in summaries]}
    with replaced_atomically(parent / RESULT_FILE) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result
