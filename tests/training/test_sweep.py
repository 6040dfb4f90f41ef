"""dlcli sweep on real Optuna studies: in memory, SQLite and journal storages; a failing trial that does not
stop the others; pruning; a stop signal and a restart that resumes the interrupted trial; two worker
processes sharing one journal file."""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app
from tests.conftest import REPO, tiny_digits_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_tiny(tmp_path, epochs: int = 1, **train):
    cfg = tmp_path / "tiny.yaml"
    config = tiny_digits_config(train={"epochs": epochs, "device": "cpu", "monitor": "val/acc", **train})
    config["data"]["batch_size"] = 128
    cfg.write_text(yaml.safe_dump(config))
    return cfg


def sweep(cfg, *words, runs):
    return CliRunner().invoke(app, ["sweep", str(cfg), *words, "--output-dir", str(runs), "-q", "--json"])


def test_grid_sweep_reports_failures_sorts_and_writes_best_yaml(tmp_path, monkeypatch):
    import dlcli.training.session

    real_train = dlcli.training.session.train

    def flaky(config, *args, **kwargs):  # a bug in one trial: reported, the others go on
        if config.optimizer["lr"] == 0.01 and config.model["hidden"] == [16]:
            raise ValueError("a bug")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(dlcli.training.session, "train", flaky)
    cfg = write_tiny(tmp_path)
    runs = tmp_path / "runs"
    # lr 1e30 on sgd makes the loss non-finite: those trials fail, the others go on
    result = sweep(cfg, "optimizer={name: sgd, lr: 0.1}", "optimizer.lr=0.01,1e30,0.05", "model.hidden=[16],[32]",
                   "--study", "grid", runs=runs)
    assert result.exit_code == 1, result.output  # failed trials make the sweep exit 1, after the table
    rows = json.loads(result.stdout)
    assert sorted(r["trial"] for r in rows) == list(range(6))
    finished = [r for r in rows if r["status"] == "finished"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(finished) == 3 and rows[:3] == finished  # best first, failures last
    values = [r["val/acc"] for r in finished]
    assert values == sorted(values, reverse=True) and all(r["epochs"] == 1 for r in finished)
    errors = sorted(r["error"] for r in failed)
    assert errors[-1] == "unexpected ValueError: a bug" and all("loss became" in e for e in errors[:2]), errors
    assert all("1e30" in r["overrides"] for r in failed[:2] if "loss" in r["error"])
    folder = runs / "tiny" / "sweep-grid"
    with (folder / "trials.csv").open() as handle:
        assert [int(r["trial"]) for r in csv.DictReader(handle)] == [r["trial"] for r in rows]
    assert len(list((runs / "tiny").glob("v*"))) == 5  # the bug struck before a run directory was made
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["optimizer"] == {**best["optimizer"], "name": "sgd", "lr": float(finished[0]["overrides"].split()[0]
                                                                                  .split("=")[1])}
    assert "best trial" in (folder / "best.yaml").read_text().splitlines()[0]
    checked = CliRunner().invoke(app, ["validate", str(folder / "best.yaml")])
    assert checked.exit_code == 0, checked.output
    assert (folder / "history.png").stat().st_size > 1000


def test_pruning_stops_the_clearly_worse_trials_early(tmp_path):
    """Trial 0 (a good learning rate) finishes first; the others learn almost nothing in an epoch, fall
    below the median of the finished trials' epoch-1 value and stop there."""
    cfg = write_tiny(tmp_path, epochs=4)
    runs = tmp_path / "runs"
    result = sweep(cfg, "optimizer.lr=0.01,1e-6,2e-6,3e-6", "--pruner", "median", "--pruner-startup", "1",
                   "--study", "p", runs=runs)
    assert result.exit_code == 0, result.output
    rows = {r["trial"]: r for r in json.loads(result.stdout)}
    assert rows[0]["status"] == "finished" and rows[0]["epochs"] == 4
    for number in (1, 2, 3):
        row = rows[number]
        assert row["status"] == "pruned" and row["epochs"] < 4, row
        summary = json.loads(open(f"{row['run_dir']}/summary.json").read())
        assert summary["status"] == "pruned" and summary["epochs"] == row["epochs"]


def test_hyperband_prunes_at_its_rungs(tmp_path):
    cfg = write_tiny(tmp_path, epochs=4)
    result = sweep(cfg, "optimizer.lr=0.01,1e-6,2e-6,3e-6", "--pruner", "hyperband", "--study", "h",
                   runs=tmp_path / "runs")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["status"] for r in rows} <= {"finished", "pruned"}
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned and all(r["epochs"] < 4 for r in pruned)
    assert all(json.loads(open(f"{r['run_dir']}/summary.json").read())["status"] == "pruned" for r in pruned)


def test_sqlite_study_continues_where_it_stopped(tmp_path):
    cfg = write_tiny(tmp_path)
    runs, db = tmp_path / "runs", f"sqlite:///{tmp_path / 'sweep.db'}"
    words = ["optimizer.lr=loguniform(1e-3,1e-1)", "model.hidden=choice([16],[32])", "--sampler", "random",
             "--study", "s", "--storage", db, "--sweep-seed", "0"]
    first = sweep(cfg, *words, "--trials", "2", runs=runs)
    assert first.exit_code == 0, first.output
    assert [r["status"] for r in json.loads(first.stdout)] == ["finished"] * 2
    again = sweep(cfg, *words, "--trials", "3", runs=runs)  # the study has 2 of 3: one more runs
    assert again.exit_code == 0, again.output
    rows = json.loads(again.stdout)
    assert len(rows) == 3 and len(list((runs / "tiny").glob("v*"))) == 3
    assert sorted(r["trial"] for r in rows) == [0, 1, 2]
    other = sweep(cfg, "optimizer.lr=uniform(1e-3,1e-1)", "--sampler", "random", "--trials", "3", "--study", "s",
                  "--storage", db, runs=runs)
    assert other.exit_code == 2 and "--study s: it was started with a different search space" in other.stderr


def test_a_stop_signal_ends_the_sweep_and_a_restart_resumes_the_interrupted_trial(tmp_path, monkeypatch):
    """SIGTERM (a scheduler's pre-emption) during trial 1: the sweep exits 143 after that run saves last.pt;
    started again on the same journal, the sweep resumes that run directory instead of starting over."""
    from dlcli.training import sweep as sweeps

    cfg = write_tiny(tmp_path, epochs=2)
    runs, journal = tmp_path / "runs", f"journal:{tmp_path / 'sweep.journal'}"
    words = ["optimizer.lr=0.01,0.02", "--study", "j", "--storage", journal]
    report = sweeps.Reporter.__call__

    def signalled(self, epoch, metrics):
        if self.trial.number == 1 and epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the run: it stops at its next step
        return report(self, epoch, metrics)

    monkeypatch.setattr(sweeps.Reporter, "__call__", signalled)
    stopped = sweep(cfg, *words, runs=runs)
    assert stopped.exit_code == 143, stopped.output
    assert "stopped by SIGTERM at epoch 2" in stopped.stderr
    with (runs / "tiny" / "sweep-j" / "trials.csv").open() as handle:  # written on the way out
        rows = {int(r["trial"]): r for r in csv.DictReader(handle)}
    assert {n: r["status"] for n, r in rows.items()} == {0: "finished", 1: "interrupted", 2: "waiting"}
    interrupted_dir = rows[1]["run_dir"]

    monkeypatch.setattr(sweeps.Reporter, "__call__", report)
    again = sweep(cfg, *words, runs=runs)
    assert again.exit_code == 0, again.output
    after = {r["trial"]: r for r in json.loads(again.stdout)}
    assert after[2]["status"] == "finished" and after[2]["run_dir"] == interrupted_dir and after[2]["epochs"] == 2
    assert after[2]["overrides"] == after[1]["overrides"] == "optimizer.lr=0.02"
    assert len(list((runs / "tiny").glob("v*"))) == 2  # resumed, not run again in a new directory
    epochs = [json.loads(line)["epoch"] for line in open(f"{interrupted_dir}/metrics.jsonl")
              if '"event": "epoch"' in line]
    assert epochs == [1, 2]


def test_two_workers_on_one_journal_share_the_grid(tmp_path):
    """Two real processes on one journal file: every grid point run exactly once between them."""
    cfg = write_tiny(tmp_path)
    runs, journal = tmp_path / "runs", tmp_path / "sweep.journal"
    args = [sys.executable, "-m", "dlcli", "sweep", str(cfg), "optimizer.lr=0.01,0.02", "model.hidden=[8],[16]",
            "--study", "w", "--storage", f"journal:{journal}", "--output-dir", str(runs), "-q", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    outputs = [w.communicate(timeout=240) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [line for _, err in outputs for line in err.splitlines() if line.startswith("trial ")]
    assert len(ran) == 4 and all(err.count("trial ") >= 1 for _, err in outputs)  # both workers took trials
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = optuna.load_study(study_name="w", storage=JournalStorage(JournalFileBackend(str(journal))))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4
    assert sorted(t.user_attrs["point"] for t in done) == sorted(
        [f"optimizer.lr={lr}", f"model.hidden={h}"] for lr in ("0.01", "0.02") for h in ("[8]", "[16]"))
    assert len({t.user_attrs["run_dir"] for t in done}) == 4 and len(list((runs / "tiny").glob("v*"))) == 4
