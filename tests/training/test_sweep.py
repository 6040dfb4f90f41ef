"""dlcli sweep: grid expansion, random draws, seeds, a failing run that doesn't stop the others,
a sorted summary and sweep.csv."""

import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.training.sweep import expand, split_values
from tests.conftest import tiny_digits_config


def test_split_values_keeps_brackets_together():
    assert split_values("0.1,0.01") == ["0.1", "0.01"]
    assert split_values("[128],[256,128]") == ["[128]", "[256,128]"]
    assert split_values("{steps: 5},'a,b'") == ["{steps: 5}", "'a,b'"]


def test_expand_grid_random_and_seeds():
    grid = expand(["a=1,2", "b=x,y,z"], None, None, 0)
    assert len(grid) == 6 and ["a=1", "b=x"] in grid and ["a=2", "b=z"] in grid
    draws = expand(["a=1,2", "b=x,y,z"], 4, None, 0)
    assert len(draws) == 4 and len({tuple(d) for d in draws}) == 4
    assert draws == expand(["a=1,2", "b=x,y,z"], 4, None, 0)  # repeatable with the sweep seed
    seeded = expand(["a=1,2"], None, 3, 0)
    assert seeded[:3] == [["a=1", "seed=0"], ["a=1", "seed=1"], ["a=1", "seed=2"]] and len(seeded) == 6
    with pytest.raises(Exception, match="expected key=v1,v2"):
        expand(["oops"], None, None, 0)
    with pytest.raises(Exception, match="optimizer.lr is already swept"):
        expand(["optimizer.lr=0.1,0.01", "optimizer.lr=0.5"], None, None, 0)
    with pytest.raises(Exception, match="seed is already swept by --seeds"):
        expand(["seed=5,6"], None, 2, 0)


def test_sweep_2x2_with_a_failing_run(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    config = tiny_digits_config(train={"epochs": 1, "device": "cpu", "monitor": "val/acc"})
    cfg.write_text(yaml.safe_dump(config))
    # lr 1e30 on sgd makes the loss non-finite: that run fails, the others go on
    args = ["sweep", str(cfg), "optimizer={name: sgd, lr: 0.1}", "optimizer.lr=0.1,1e30", "model.hidden=[16],[32]",
            "--output-dir", str(tmp_path / "runs"), "--json", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # a failed run makes the sweep exit 1, after the table
    rows = json.loads(result.stdout)
    assert len(rows) == 4
    finished = [r for r in rows if r["status"] == "finished"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(finished) == 2 and len(failed) == 2 and all("1e30" in r["overrides"] for r in failed)
    assert all("loss became" in r["error"] for r in failed)
    values = [r["val/acc"] for r in finished]
    assert values == sorted(values, reverse=True) and rows[:2] == finished  # best first, failures last
    csv_files = list((tmp_path / "runs" / "tiny").glob("sweep-*.csv"))
    assert len(csv_files) == 1
    with csv_files[0].open() as handle:
        assert [r["overrides"] for r in csv.DictReader(handle)] == [r["overrides"] for r in rows]
    assert len(list((tmp_path / "runs" / "tiny").glob("v*"))) == 4


def test_print_commands_and_invalid_points(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config()))
    printed = CliRunner().invoke(app, ["sweep", str(cfg), "optimizer.lr=0.1,0.01", "--print-commands"])
    assert printed.exit_code == 0
    assert printed.stdout.splitlines() == [f"dlcli train {cfg} optimizer.lr=0.1", f"dlcli train {cfg} optimizer.lr=0.01"]
    bad = CliRunner().invoke(app, ["sweep", str(cfg), "optimizer.lr=0.1,-1", "--output-dir", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "optimizer.lr" in bad.output and not (tmp_path / "r").exists()
    bad_printed = CliRunner().invoke(app, ["sweep", str(cfg), "optimizer.lr=0.1,-1", "--print-commands"])
    assert bad_printed.exit_code == 2 and "optimizer.lr" in bad_printed.stderr and not bad_printed.stdout


def test_a_stop_signal_ends_the_sweep_with_its_exit_code_and_keeps_the_csv(tmp_path, monkeypatch):
    """SIGTERM (a scheduler's pre-emption) during a point stops the whole sweep, not just that run."""
    import signal

    import dlcli.training.session
    from dlcli.errors import Interrupted

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 1, "device": "cpu"})))
    calls = []

    def stopped(config, *args, **kwargs):
        calls.append(config.optimizer["lr"])
        raise Interrupted("stopped by SIGTERM at epoch 1, batch 3 (step 3); saved last.pt", signal.SIGTERM)

    monkeypatch.setattr(dlcli.training.session, "train", stopped)
    result = CliRunner().invoke(app, ["sweep", str(cfg), "optimizer.lr=0.1,0.01", "--output-dir", str(tmp_path / "runs"),
                                      "-q"])
    assert result.exit_code == 143, result.output
    assert calls == [0.1]  # the second point never started
    assert result.stderr.startswith("error: stopped by SIGTERM")
    [csv_file] = (tmp_path / "runs" / "tiny").glob("sweep-*.csv")
    with csv_file.open() as handle:
        assert [(r["overrides"], r["status"]) for r in csv.DictReader(handle)] == [
            ("optimizer.lr=0.1", "interrupted"), ("optimizer.lr=0.01", "not run")]


def test_sweep_table_shows_rows_in_order(capsys):
    from dlcli.cli.report import print_sweep

    rows = [{"overrides": "optimizer.lr=0.1", "status": "finished", "val/acc": 0.91, "run_dir": "runs/t/v2", "error": None},
            {"overrides": "optimizer.lr=1e30", "status": "failed", "val/acc": None, "run_dir": None,
             "error": "loss became nan"}]
    print_sweep(rows, "runs/t/sweep.csv", "val/acc")
    text = capsys.readouterr().out
    assert "sorted by val/acc" in text and "0.9100" in text and "loss became nan" in text
    assert text.index("lr=0.1") < text.index("lr=1e30")


def test_an_unknown_metric_stops_the_sweep_before_any_run(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config()))
    result = CliRunner().invoke(app, ["sweep", str(cfg), "optimizer.lr=0.1,0.01", "--metric", "val/nope",
                                      "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--metric: unknown metric 'val/nope'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_an_unexpected_failure_in_one_point_does_not_stop_the_others(tmp_path, monkeypatch):
    import dlcli.training.session

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_digits_config(train={"epochs": 1, "device": "cpu"})))
    real_train = dlcli.training.session.train

    def flaky(config, *args, **kwargs):
        if config.optimizer["lr"] == 0.1:
            raise ValueError("a bug")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(dlcli.training.session, "train", flaky)
    result = CliRunner().invoke(app, ["sweep", str(cfg), "optimizer.lr=0.1,0.01", "--output-dir",
                                      str(tmp_path / "runs"), "--json", "-q"])
    assert result.exit_code == 1, result.output
    rows = {r["overrides"]: r for r in json.loads(result.stdout)}
    assert rows["optimizer.lr=0.1"]["error"] == "unexpected ValueError: a bug"
    assert rows["optimizer.lr=0.01"]["status"] == "finished"
