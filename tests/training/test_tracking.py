"""MLflow tracking against a real SQLite store, read back through MlflowClient: params, metrics with steps,
tags, artifacts, KILLED on a stop signal and the same run continued by a resume; a broken store never ends
training; `dlcli runs --mlflow`; without MLflow, exit 2 with the install line."""

import io
import json
import os
import signal
import sys

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import Interrupted
from dlcli.training.session import train
from dlcli.training.tracking import flatten
from tests.conftest import tiny_digits_config

pytest.importorskip("mlflow")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(root, epochs: int = 2, **mlflow):
    data = tiny_digits_config(train={"epochs": epochs, "device": "cpu", "monitor": "val/acc"},
                              logging={"mlflow": {"tracking_uri": f"sqlite:///{root}/mlflow.db", **mlflow}})
    data["data"]["batch_size"] = 128
    return validate(data)


def quiet(cfg):
    return Progress(cfg.train.epochs, quiet=True, stream=io.StringIO())


def git_repo_with(folder, name: str, text: str):
    """A git repository holding the config file, committed, then edited (a dirty work tree)."""
    import subprocess

    folder.mkdir()
    (folder / name).write_text(text)
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", name], check=True)
    subprocess.run(git + ["commit", "-qm", "config"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (folder / name).write_text(text + "# edited\n")
    return folder / name, commit


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A run stopped by SIGTERM after epoch 1 (saved, KILLED in MLflow), then resumed to the end; its config
    lies in a git repository with an uncommitted edit."""
    from dlcli.training.session import train_command

    root = tmp_path_factory.mktemp("tracked")
    cfg = config(root, log_checkpoints="all")
    cfg_file, commit = git_repo_with(root / "repo", "tiny.yaml", yaml.safe_dump(cfg.model_dump(mode="json")))
    command = train_command(str(cfg_file), [])

    def stop_after_first_epoch(epoch, metrics):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the run stops at its next step, after saving last.pt
        return False

    with pytest.raises(Interrupted) as stopped:
        train(cfg, str(root), None, quiet(cfg), on_epoch=stop_after_first_epoch, command=command)
    first = stopped.value.summary  # type: ignore[attr-defined]
    from dlcli.training.tracking import client

    mlflow = client(f"sqlite:///{root}/mlflow.db")
    killed = mlflow.get_run(first["mlflow"]["run_id"]).info.status
    resumed = train(cfg, str(root), None, quiet(cfg), resume=first["run_dir"], command=command)
    return root, cfg, first, killed, resumed, mlflow, commit


def test_a_stop_signal_ends_the_mlflow_run_killed_and_resume_continues_it(tracked):
    root, cfg, first, killed, resumed, mlflow, commit = tracked
    assert first["status"] == "interrupted" and killed == "KILLED"
    run_id = first["mlflow"]["run_id"]
    assert resumed["mlflow"] == {"tracking_uri": f"sqlite:///{root}/mlflow.db", "experiment": "tiny",
                                 "run_id": run_id, "status": "ok"}
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dlcli.status"] == "finished"
    experiment = mlflow.get_experiment_by_name("tiny")
    assert len(mlflow.search_runs([experiment.experiment_id])) == 1  # one run, not one per session


def test_params_metrics_and_tags(tracked):
    root, cfg, first, killed, resumed, mlflow, commit = tracked
    run = mlflow.get_run(resumed["mlflow"]["run_id"])
    assert run.data.params == flatten(cfg.model_dump(mode="json"))
    assert run.data.params["optimizer.lr"] == "0.01" and run.data.params["model.hidden"] == "[32]"
    history = mlflow.get_metric_history(run.info.run_id, "val/acc")
    records = [json.loads(line) for line in open(f"{resumed['run_dir']}/metrics.jsonl")]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [(m.step, m.value) for m in history] == [(r["step"], r["val/acc"]) for r in epochs]
    assert [m.value for m in mlflow.get_metric_history(run.info.run_id, "epoch")] == [1.0, 2.0]
    tags = run.data.tags
    assert tags["dlcli.device"] == "cpu" and tags["torch.version"] and tags["dlcli.version"]
    assert tags["mlflow.runName"] == "tiny/v1" and tags["dlcli.run_dir"] == resumed["run_dir"]
    assert tags["dlcli.command"].startswith("dlcli train") and tags["dlcli.command"].endswith("tiny.yaml")
    assert tags["mlflow.source.git.commit"] == commit and tags["dlcli.git_dirty"] == "True"


def test_artifacts(tracked):
    root, cfg, first, killed, resumed, mlflow, commit = tracked
    run_id = resumed["mlflow"]["run_id"]
    top = {a.path for a in mlflow.list_artifacts(run_id)}
    assert {"config.yaml", "summary.json", "curves.png", "checkpoints"} <= top
    assert {a.path for a in mlflow.list_artifacts(run_id, "checkpoints")} >= {"checkpoints/best.pt",
                                                                               "checkpoints/last.pt"}
    local = mlflow.download_artifacts(run_id, "summary.json", str(root / "down"))
    assert json.load(open(local))["status"] == "finished"
    assert (root / "mlartifacts").is_dir()  # beside the runs, not ./mlruns of the working folder


def test_the_checkpoint_keeps_the_run_id_and_eval_still_loads_it(tracked):
    root, cfg, first, killed, resumed, mlflow, commit = tracked
    from dlcli.training import checkpoint

    payload = checkpoint.load(resumed["checkpoints"]["last"])
    assert payload["tracking"] == {"mlflow_run_id": resumed["mlflow"]["run_id"]}
    result = CliRunner().invoke(app, ["eval", resumed["run_dir"], "--json"])
    assert result.exit_code == 0, result.output


def test_runs_mlflow_lists_the_tracked_runs(tracked):
    root, cfg, first, killed, resumed, mlflow, commit = tracked
    result = CliRunner().invoke(app, ["runs", str(root), "--mlflow", "--experiment", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["run_id"] == resumed["mlflow"]["run_id"] and row["status"] == "FINISHED" and row["epochs"] == 2
    missing = CliRunner().invoke(app, ["runs", str(root), "--mlflow", "--experiment", "nope"])
    assert missing.exit_code == 2 and "no MLflow experiment 'nope'" in missing.stderr


@pytest.mark.parametrize("store", ["sqlite:///{tmp}/a-file/mlflow.db", "http://127.0.0.1:9"])
def test_a_broken_or_unreachable_tracking_store_never_stops_training(tmp_path, monkeypatch, store):
    (tmp_path / "a-file").write_text("a file where the store's folder should be")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens on port 9: fail at once
    cfg = config(tmp_path, epochs=2)
    cfg.logging.mlflow.tracking_uri = store.format(tmp=tmp_path)  # type: ignore[union-attr]
    stream = io.StringIO()
    summary = train(cfg, str(tmp_path / "runs"), None, Progress(1, quiet=True, stream=stream))
    assert summary["status"] == "finished"
    assert summary["mlflow"]["status"].startswith("failed: ") and summary["mlflow"]["run_id"] is None
    warnings = [line for line in stream.getvalue().splitlines() if "MLflow tracking failed" in line]
    assert len(warnings) == 1, stream.getvalue()
    saved = json.loads(open(f"{summary['run_dir']}/summary.json").read())
    assert saved["mlflow"]["status"].startswith("failed: ")
    assert len([line for line in open(f"{summary['run_dir']}/metrics.jsonl")]) == 2  # metrics kept


def test_without_mlflow_training_stops_with_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_digits_config(logging={"mlflow": True})))
    result = CliRunner().invoke(app, ["train", str(cfg_file), "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "logging.mlflow: needs MLflow: pip install 'dlcli[mlflow]'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_sweep_trials_are_child_runs_of_the_sweeps_run(tmp_path):
    data = tiny_digits_config(train={"epochs": 1, "device": "cpu", "monitor": "val/acc"},
                              logging={"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                                  "experiment": "sweeps"}})
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["sweep", str(cfg_file), "optimizer.lr=0.01,0.02", "--study", "s",
                                      "--output-dir", str(tmp_path / "runs"), "-q", "--json"])
    assert result.exit_code == 0, result.output
    from dlcli.training.tracking import client

    mlflow = client(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("sweeps").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and parent.data.tags["mlflow.runName"] == "sweep-s"
    assert parent.info.status == "FINISHED" and parent.data.params["space.optimizer.lr"] == "0.01,0.02"
    best = max(json.loads(result.stdout), key=lambda r: r["val/acc"])
    assert parent.data.metrics["best/val/acc"] == pytest.approx(best["val/acc"])
    assert {"trials.csv", "best.yaml"} <= {a.path for a in mlflow.list_artifacts(parent.info.run_id)}
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.01", "0.02"]


@pytest.mark.slow
def test_under_ddp_only_rank_0_tracks(tmp_path):
    """Two torchrun processes (CPU, gloo): one MLflow run, each epoch logged once."""
    import subprocess

    from tests.conftest import REPO

    data = tiny_digits_config(train={"epochs": 2, "device": "cpu"},
                              logging={"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}})
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "dlcli", "train", str(cfg_file), "--devices", "2", "-q", "--json",
                           "--output-dir", str(tmp_path / "runs")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    from dlcli.training.tracking import client

    mlflow = client(f"sqlite:///{tmp_path}/mlflow.db")
    [run] = mlflow.search_runs([mlflow.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_id == json.loads(done.stdout)["mlflow"]["run_id"]
    assert [m.value for m in mlflow.get_metric_history(run.info.run_id, "epoch")] == [1.0, 2.0]
