"""The Optuna side of `dlcli sweep`: storage, sampler and pruner from the command line's words, the
study (created, or joined by another worker or a restart), and how many trials it may still start.
Optuna is imported only when a sweep runs (`pip install 'dlcli[search]'`)."""

import os
import re
from pathlib import Path

from dlcli.errors import ConfigError

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("median", "hyperband", "none")
# A trial that does not count against --trials: stopped by a signal (a copy of it is queued again) or
# asked for by a worker after the last trial was handed out (told failed at once, never run).
NOT_COUNTED = ("interrupted", "skipped")


def optuna():
    """The optuna module, or exit 2 with the install line."""
    try:
        import optuna as module
    except ImportError:
        raise ConfigError("dlcli sweep needs Optuna: pip install 'dlcli[search]'") from None
    # dlcli prints its own line per trial and its own errors; Optuna's warnings (e.g. "no complete
    # trials" when a sweep is stopped early) only with --debug (DLCLI_DEBUG), as other libraries' warnings
    debug = os.environ.get("DLCLI_DEBUG", "") not in ("", "0")
    module.logging.set_verbosity(module.logging.WARNING if debug else module.logging.ERROR)
    return module


def check_study_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise ConfigError(f"--study: {name!r} must be a plain name (letters, digits, _ . -)")
    return name


def storage(url: str | None):
    """None (in memory), Optuna's journal file storage for `journal:PATH` (safe on a shared file system,
    e.g. NFS), or an RDB URL (sqlite:///sweep.db, postgresql://...)."""
    if url is None:
        return None
    op = optuna()
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        if not path.name or not path.parent.is_dir():
            raise ConfigError(f"--storage {url}: the folder of the journal file must exist")
        if path.exists() and not path.is_file():
            raise ConfigError(f"--storage {url}: {path} is not a file (a folder?); name the journal file")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(f"--storage {url!r}: expected journal:PATH or a database URL such as sqlite:///sweep.db")
    try:
        return op.storages.RDBStorage(url)
    except Exception as err:  # noqa: BLE001  sqlalchemy's errors name the driver or file: say which option
        raise ConfigError(f"--storage {url}: cannot open it: {str(err).splitlines()[0]}") from None


def sampler(kind: str, seed: int | None, grid: list[list[str]] | None):
    op = optuna()
    if kind == "grid":
        return point_sampler(grid or [[]])
    if kind == "random":
        return op.samplers.RandomSampler(seed=seed)
    return op.samplers.TPESampler(seed=seed)


def pruner(kind: str, startup: int, epochs: int):
    op = optuna()
    if kind == "median":
        return op.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if kind == "hyperband":
        return op.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return op.pruners.NopPruner()


def point_sampler(points: list[list[str]]):
    """Grid search that gives trial k of the study grid point k (its place among the counted trials, see
    next_trial), so workers sharing one storage never run a point twice or skip one: Optuna's GridSampler
    picks an unvisited point at random, and two workers asking at once can pick the same one."""
    from optuna.samplers import BaseSampler

    class PointSampler(BaseSampler):
        def infer_relative_search_space(self, study, trial) -> dict:
            return {}

        def sample_relative(self, study, trial, search_space) -> dict:
            return {}

        def sample_independent(self, study, trial, name, distribution):
            point = points[trial.user_attrs["dlcli_point"]]
            return dict(override.split("=", 1) for override in point)[name]

    return PointSampler()


def open_study(name: str, store, sampler_, pruner_, direction: str, signature: dict):
    """The study `name`, created or joined; `signature` (search space, metric, config) must match the one
    it was created with, so a worker started with other settings cannot mix its trials in."""
    op = optuna()
    try:
        study = op.create_study(study_name=name, storage=store, sampler=sampler_, pruner=pruner_,
                                direction=direction, load_if_exists=True)
    except Exception as err:  # noqa: BLE001  a storage that is locked, unreachable or of another schema
        raise ConfigError(f"--study {name}: cannot open it in the storage: {str(err).splitlines()[0]}") from None
    if study.direction.name.lower() != direction:
        raise ConfigError(f"--study {name}: the study maximizes/minimizes the other way "
                          f"({study.direction.name.lower()}); use another --study name")
    saved = study.user_attrs.get("dlcli")
    if saved is None:
        study.set_user_attr("dlcli", signature)
    elif saved != signature:
        changed = sorted(k for k in signature if saved.get(k) != signature.get(k))
        raise ConfigError(f"--study {name}: it was started with a different {', '.join(changed)} "
                          f"({saved.get(changed[0])!r}); use another --study name or the same settings")
    return study


def counted(trial) -> bool:
    return trial.user_attrs.get("dlcli_status") not in NOT_COUNTED


def next_trial(study, budget: int):
    """The next trial to run, or None when the study has its `budget` of trials. A queued trial (one an
    interrupted trial left) comes first. The count is checked again after asking, by the trial's
    number, so two workers asking at once never run more than `budget` between them."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = any(t.state == TrialState.WAITING for t in trials)
    if not waiting and sum(map(counted, trials)) >= budget:
        return None
    trial = study.ask()
    trials = study.get_trials(deepcopy=False)
    place = sum(1 for t in trials if t.number < trial.number and counted(t))
    if place >= budget:
        trial.set_user_attr("dlcli_status", "skipped")
        study.tell(trial, state=TrialState.FAIL)
        return None
    trial.set_user_attr("dlcli_point", place)
    return trial
