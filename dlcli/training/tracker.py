"""The MLflow run of one training session (training/tracking.py has the helpers). Every MLflow call goes
through `_guarded`: the first failure is one warning and ends tracking for this session, never the run."""

import shlex
import time
from pathlib import Path
from typing import Any

from dlcli.training import tracking


class Tracker:
    def __init__(self, config, run_dir: Path, progress):
        self.settings = tracking.settings(config) or {}
        self.run_dir, self.progress = Path(run_dir).absolute(), progress
        self.runs_root = str(self.run_dir.parent.parent)  # runs/<name>/<version>
        self.uri = tracking.tracking_uri(self.settings.get("tracking_uri"), self.runs_root)
        self.client: Any = None
        self.run_id: str | None = None
        self.failed: str | None = None

    def start(self, config, resume_id: str | None, device, command: str, parent: str | None = None) -> None:
        """Continue the MLflow run `resume_id` (a resumed training), or start one."""
        def begin():
            self.client = tracking.client(self.uri)
            existing: dict = {}
            if resume_id and self._exists(resume_id):
                self.run_id = resume_id
                self.client.update_run(resume_id, status="RUNNING")
                existing = self.client.get_run(resume_id).data.params
            else:
                experiment = tracking.experiment_id(self.client, self.settings["experiment"], self.runs_root,
                                                    self.uri)
                tags = tracking.base_tags(self.run_dir, device, command, _config_source(command), parent)
                self.run_id = self.client.create_run(experiment, tags=tags).info.run_id
            self._log_params({k: v for k, v in tracking.flatten(config.model_dump(mode="json")).items()
                              if k not in existing})  # MLflow refuses to change a param (train.epochs on resume)

        self._guarded(begin)

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:  # noqa: BLE001  deleted, or another store: start a new run
            self.progress.message(f"note: MLflow run {run_id} of the checkpoint is not in {self.uri}; "
                                  f"starting a new one")
            return False

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log(self, record: dict) -> None:
        """A metrics.jsonl record (a step's or an epoch's) as MLflow metrics at its step."""
        if self.run_id is None or self.failed is not None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(record.get("step", 0))
        metrics = [Metric(key, float(value), now, step) for key, value in record.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)
                   and ("/" in key or key == "lr")]
        if record.get("event") == "epoch":
            metrics.append(Metric("epoch", float(record["epoch"]), now, step))
        if metrics:
            self._guarded(lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def finish(self, status: str, summary: dict, write_summary) -> None:
        """Upload the run's files (checkpoints as logging.mlflow.log_checkpoints says) and end the MLflow run
        with the run's status: FINISHED, KILLED on a stop signal, FAILED. If that fails, summary.json (already
        written, and uploaded first) is written again to say so."""
        if self.run_id is None:
            return

        def end():
            for name in ("config.yaml", "summary.json", "curves.png"):
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
            if (self.run_dir / "samples").is_dir():  # a GAN's sample grids
                self.client.log_artifacts(self.run_id, str(self.run_dir / "samples"), "samples")
            for path in self._checkpoints():
                self.client.log_artifact(self.run_id, str(path), "checkpoints")
            self.client.set_tag(self.run_id, "dlcli.status", status)
            self.client.set_terminated(self.run_id, tracking.STATUSES.get(status, "FAILED"))

        self._guarded(end)
        if self.failed is not None and summary.get("mlflow") != self.summary()["mlflow"]:
            try:
                write_summary(summary | self.summary())
            except OSError as err:
                self.progress.message(f"warning: could not write summary.json: {err}")

    def _checkpoints(self) -> list[Path]:
        folder, choice = self.run_dir / "checkpoints", self.settings.get("log_checkpoints")
        if choice == "all":
            return sorted(p for p in folder.glob("*.pt") if p.is_file())
        best = folder / "best.pt"
        return [best] if choice == "best" and best.is_file() else []

    def _guarded(self, action) -> None:
        if self.failed is not None:
            return
        try:
            action()
        except Exception as err:  # noqa: BLE001  tracking must never end a training
            self.failed = tracking.describe_failure(err)
            self.progress.message(f"warning: MLflow tracking failed ({self.uri}): {self.failed}; training goes "
                                  f"on untracked (metrics.jsonl has every metric)")

    def summary(self) -> dict:
        return {"mlflow": {"tracking_uri": self.uri, "experiment": self.settings.get("experiment"),
                           "run_id": self.run_id, "status": f"failed: {self.failed}" if self.failed else "ok"}}

    def checkpoint_section(self) -> dict | None:
        """What a checkpoint keeps so that a resume continues this MLflow run."""
        return {"mlflow_run_id": self.run_id} if self.run_id else None


def _config_source(command: str) -> str | None:
    """The config file of `dlcli train CONFIG ...` (the command session.train_command builds)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return words[2] if len(words) > 2 and words[:2] == ["dlcli", "train"] else None
