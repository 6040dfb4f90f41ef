"""A sweep's parent MLflow run, when its config tracks runs (`logging.mlflow`): every trial's run is a child
of it (tag mlflow.parentRunId). Workers sharing a study share the parent (its id is kept in the study).
As in a run, an MLflow failure is one warning, never the end of the sweep."""

import sys
from pathlib import Path

from dlcli.training import tracking


class SweepRun:
    def __init__(self, p, study, say):
        self.settings = tracking.settings(p.configs[0])
        self.say, self.run_id, self.client = say, None, None
        if self.settings is None:
            return
        root = str(p.folder.parent.parent)  # runs/<name>/sweep-<study>
        self.uri = tracking.tracking_uri(self.settings["tracking_uri"], root)
        try:
            self.client = tracking.client(self.uri)
            self.run_id = study.user_attrs.get("dlcli_mlflow_parent")
            if self.run_id is None:
                experiment = tracking.experiment_id(self.client, self.settings["experiment"], root, self.uri)
                tags = {"mlflow.runName": f"sweep-{p.study}", "dlcli.study": p.study, "dlcli.sampler": p.sampler,
                        "dlcli.metric": p.metric, "dlcli.argv": " ".join(sys.argv)[:5000]}
                self.run_id = self.client.create_run(experiment, tags=tags).info.run_id
                study.set_user_attr("dlcli_mlflow_parent", self.run_id)
                for axis in p.axes:
                    self.client.log_param(self.run_id, f"space.{axis.key}", axis.describe())
            else:
                self.client.update_run(self.run_id, status="RUNNING")
        except Exception as err:  # noqa: BLE001  tracking never ends a sweep
            self._warn(err)

    def _warn(self, err: Exception) -> None:
        self.say(f"warning: MLflow tracking of the sweep failed ({self.uri}): {tracking.describe_failure(err)}; "
                 f"trials are tracked on their own")
        self.run_id = None

    def finish(self, folder: Path, best: dict | None, metric: str, interrupted: bool) -> None:
        """The sweep's outputs and its best value on the parent run, which ends FINISHED (KILLED on a signal)."""
        if self.run_id is None:
            return
        try:
            for name in ("trials.csv", "best.yaml", "history.png", "importances.png"):
                if (folder / name).is_file():
                    self.client.log_artifact(self.run_id, str(folder / name))
            if best is not None:
                self.client.log_metric(self.run_id, f"best/{metric}", float(best[metric]))
                self.client.set_tag(self.run_id, "dlcli.best_trial", str(best["trial"]))
            self.client.set_terminated(self.run_id, "KILLED" if interrupted else "FINISHED")
        except Exception as err:  # noqa: BLE001
            self._warn(err)
