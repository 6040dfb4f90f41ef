"""Opening a run: a new run directory, or the one a resume continues, locked by this process
(runs/lock.py) before anything is written in it."""

from contextlib import contextmanager
from pathlib import Path

from dlcli.config.yamlio import dump_yaml
from dlcli.errors import ConfigError
from dlcli.ranks import is_main
from dlcli.runs import lock as run_lock
from dlcli.runs import rundir as runs
from dlcli.runs.rundir import RunDir


def open_run(config, trainer, root: str, version: str | None, resume: str | None, folder: str | None = None):
    """(RunDir, checkpoint payload or None): a new run, or the one being resumed, locked by this
    process before anything is written (under DDP by rank 0 alone, which alone writes). A checkpoint
    to resume is checked in full against `trainer` before the run directory changes."""
    from dlcli.training import resume as resuming

    if resume and is_main():  # a busy run may have no checkpoint yet: say it is busy
        _refuse_busy(resume, config, root)
    found = resuming.find_checkpoint(resume, config, root) if resume else None
    if not is_main():  # other DDP ranks read the checkpoint to resume from but write nothing
        payload = resuming.load_for_resume(found, config, trainer) if found is not None else None
        return runs.NullRun(), payload
    if found is None:
        run = RunDir.create(root, folder or config.name, version)
        with _released_on_failure(run):
            run.write_text("config.yaml", _config_yaml(config))
        return run, None
    run = RunDir.open(_run_dir_of(found, config, trainer))  # locked before reading: the checkpoint is its holder's
    with _released_on_failure(run):
        payload = resuming.load_for_resume(found, config, trainer)
        run.write_text("config.yaml", _config_yaml(config))
        run.truncate_log(payload["state"]["step"])
    return run, payload


def _run_dir_of(found: Path, config, trainer) -> Path:
    """The run directory of the checkpoint to resume. A file outside one is refused (exit 2) only
    after the file itself is checked: a broken or unsafe file is exit 4 wherever it lies."""
    from dlcli.training import resume as resuming

    try:
        return resuming.run_dir_of(found)
    except ConfigError:
        resuming.load_for_resume(found, config, trainer)
        raise


@contextmanager
def _released_on_failure(run: RunDir):
    try:
        yield
    except BaseException:
        run.release()
        raise


def _config_yaml(config) -> str:
    return dump_yaml(config.model_dump(mode="json"))


def _refuse_busy(resume: str, config, root: str) -> None:
    if resume == "auto":
        _refuse_busy_runs(config, root)
        return
    path = Path(resume).resolve()
    run_dir = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    who = run_lock.holder(run_dir) if run_dir is not None else None
    if run_dir is not None and who is not None:
        raise run_lock.busy(run_dir, who)


def _refuse_busy_runs(config, root: str) -> None:
    """`--resume auto` while a run of this config is in use: refuse, naming it, rather than resume an
    older run or start a new one behind the live one's back."""
    import yaml

    from dlcli.training.resume import config_differences, filled_config

    current = config.model_dump(mode="json")
    for saved in sorted((Path(root) / config.name).glob("*/config.yaml")):
        who = run_lock.holder(saved.parent)
        if who is None:
            continue
        try:
            old = yaml.safe_load(saved.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(old, dict) and not config_differences(filled_config(old), current, old):
            error = run_lock.busy(saved.parent, who)
            raise ConfigError(f"--resume auto: {error}", hint=error.hint)
