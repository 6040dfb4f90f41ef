"""MLflow tracking of a run (`logging.mlflow`): params, metrics with their steps, tags, artifacts and the
final status. Rank 0 only. Tracking never ends a training: the first MLflow failure is one warning, after
which the run goes on untracked (metrics.jsonl has everything) and summary.json says tracking failed.
MLflow is imported only when a run asks for it (`pip install 'dlcli[mlflow]'`)."""

import os
import subprocess
import sys
from pathlib import Path

import dlcli
from dlcli.errors import ConfigError, first_line

INSTALL = "pip install 'dlcli[mlflow]'"
# How a run's status reads in MLflow.
STATUSES = {"finished": "FINISHED", "pruned": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


def settings(config) -> dict | None:
    """The run's MLflow settings with defaults filled in, or None when tracking is off."""
    chosen = config.logging.mlflow
    if chosen is False:
        return None
    values = {} if chosen is True else chosen.model_dump()
    return {"tracking_uri": values.get("tracking_uri"), "experiment": values.get("experiment") or config.name,
            "log_checkpoints": values.get("log_checkpoints") or "best"}


def tracking_uri(chosen: str | None, runs_root: str) -> str:
    """logging.mlflow.tracking_uri, else $MLFLOW_TRACKING_URI, else a SQLite store in the runs root."""
    return chosen or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(runs_root).absolute() / 'mlflow.db'}"


def require_mlflow(what: str = "logging.mlflow") -> None:
    """Exit 2 with the install line when MLflow is missing (checked before anything is written)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(f"{what}: needs MLflow: {INSTALL}") from None


def require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("logging.tensorboard: needs the tensorboard package: "
                          "pip install 'dlcli[tensorboard]'") from None


def client(uri: str):
    """An MlflowClient that gives up quickly on a server that does not answer (MLflow's own default
    retries for minutes); the user's MLFLOW_HTTP_* settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines on creating tables
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client, name: str, runs_root: str, uri: str) -> str:
    """The experiment's id, created on first use with its artifacts beside the runs (a SQLite store
    would otherwise put them in ./mlruns of whatever folder training started in)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (Path(runs_root).absolute() / "mlartifacts").as_uri() if uri.startswith(("sqlite:", "file:")) \
        else None
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001  another process created it meanwhile
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(value, prefix: str = "") -> dict[str, str]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": "0.1"}; lists stay whole ("[64, 128]")."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: str(value)[:6000]}  # MLflow's longest param value


def git_tags(config_source: str | None) -> dict[str, str]:
    """The commit (and whether the work tree differs from it) of the git repository holding the
    config file, if any; git missing or no repository: no tags."""
    if not config_source:
        return {}
    folder = str(Path(config_source).absolute().parent)
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit.stdout.strip(), "dlcli.git_dirty": str(bool(dirty.stdout.strip()))}


def base_tags(run_dir: Path, device, command: str, config_source: str | None, parent: str | None) -> dict:
    import torch

    tags = {"dlcli.version": dlcli.__version__, "torch.version": str(torch.__version__), "dlcli.device": str(device),
            "dlcli.command": command, "dlcli.argv": " ".join(sys.argv)[:5000], "dlcli.run_dir": str(run_dir),
            "mlflow.runName": f"{run_dir.parent.name}/{run_dir.name}", **git_tags(config_source)}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def describe_failure(err: BaseException) -> str:
    return f"{type(err).__name__}: {first_line(err, 'no message')[:300]}"


def tracked_runs(uri: str, experiment: str | None) -> list[dict]:
    """The runs of one experiment (all experiments when None) in the store at `uri`, newest first."""
    require_mlflow("--mlflow")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(f"--mlflow: no MLflow store at {uri.removeprefix('sqlite:///')} (no run was tracked "
                          f"there); give --tracking-uri")  # reading must not create an empty store
    mlflow_client = client(uri)
    try:
        if experiment is None:
            experiments = mlflow_client.search_experiments()
        else:
            found = mlflow_client.get_experiment_by_name(experiment)
            if found is None:
                raise ConfigError(f"--experiment: no MLflow experiment {experiment!r} in {uri}")
            experiments = [found]
        names = {e.experiment_id: e.name for e in experiments}
        found_runs = mlflow_client.search_runs(list(names), order_by=["attributes.start_time DESC"]) if names else []
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001  an unreachable server or a broken store: say which
        from dlcli.errors import DlcliError

        raise DlcliError(f"--mlflow: cannot read the MLflow store {uri}: {describe_failure(err)}") from None
    return [{"run_id": r.info.run_id, "experiment": names[r.info.experiment_id],
             "name": r.data.tags.get("mlflow.runName"), "status": r.info.status,
             "dlcli_status": r.data.tags.get("dlcli.status"), "parent": r.data.tags.get("mlflow.parentRunId"),
             "started": r.info.start_time, "epochs": r.data.metrics.get("epoch"),
             "run_dir": r.data.tags.get("dlcli.run_dir"), "metrics": dict(r.data.metrics)} for r in found_runs]
