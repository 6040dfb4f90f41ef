"""k-fold cross-validation: folds cover the data once and keep class proportions, `train --folds K`
runs K ordinary runs under one folder and reports mean ± std, `--resume` of that folder continues
only the unfinished folds, and bad settings are exit 2."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.config import validate
from dlcli.data.splits import fold_indices
from dlcli.errors import ConfigError
from tests.conftest import tiny_digits_config


@pytest.mark.parametrize("stratify", [True, False])
def test_the_folds_cover_every_sample_once_and_stratified_folds_keep_class_shares(stratify):
    labels = torch.tensor([0] * 30 + [1] * 60 + [2] * 9)
    vals = [fold_indices(labels, 3, i, seed=7, stratify=stratify) for i in range(3)]
    assert sorted(i for _, val in vals for i in val) == list(range(99))
    for train, val in vals:
        assert set(train).isdisjoint(val) and len(train) + len(val) == 99 and len(val) == 33
        if stratify:
            assert Counter(labels[val].tolist()) == {0: 10, 1: 20, 2: 3}
    assert vals[0] != fold_indices(labels, 3, 0, seed=8, stratify=stratify)  # the seed shuffles


def run_folds(*args):
    return CliRunner().invoke(app, ["train", *map(str, args), "-q"])


def test_folds_train_under_one_folder_and_report_mean_and_std(tmp_path, write_config):
    cfg = write_config(tiny_digits_config(train={"epochs": 1, "device": "cpu", "monitor": "val/acc"}))
    result = run_folds(cfg, "--folds", 3, "--output-dir", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    cv = json.loads(result.stdout)
    parent = tmp_path / "runs" / "tiny" / "v1"
    assert cv["run_dir"] == str(parent) and cv["folds"] == 3 and cv["monitor"] == "val/acc"
    assert cv["runs"] == [str(parent / f"fold-{i}") for i in (1, 2, 3)]
    assert cv["mean"] == pytest.approx(sum(cv["values"]) / 3) and cv["std"] > 0
    assert json.loads((parent / "cv.json").read_text()) == cv
    for i in (1, 2, 3):
        summary = json.loads((parent / f"fold-{i}" / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["best"]["value"] == cv["values"][i - 1]


def test_resume_continues_only_the_unfinished_folds(tmp_path, write_config):
    cfg = write_config(tiny_digits_config(train={"epochs": 1, "device": "cpu"}))
    assert run_folds(cfg, "--folds", 3, "--output-dir", tmp_path / "runs").exit_code == 0
    parent = tmp_path / "runs" / "tiny" / "v1"
    first = (parent / "fold-1" / "summary.json").read_text()
    shutil.rmtree(parent / "fold-2")  # never started
    (parent / "fold-3" / "summary.json").unlink()  # stopped after its last checkpoint
    (parent / "cv.json").unlink()
    result = run_folds(cfg, "--resume", parent, "--json")
    assert result.exit_code == 0, result.output
    assert "fold 1/3: finished before" in result.stderr
    assert (parent / "fold-1" / "summary.json").read_text() == first  # left alone
    assert json.loads((parent / "fold-2" / "summary.json").read_text())["status"] == "finished"
    assert json.loads((parent / "fold-3" / "summary.json").read_text())["status"] == "finished"
    assert json.loads(result.stdout)["folds"] == 3
    assert all(Path(run).is_absolute() for run in json.loads(result.stdout)["runs"])
    from dlcli.runs.table import collect_runs

    rows = collect_runs(str(tmp_path / "runs"))  # the runs root lists the folds, under the config's name
    assert sorted((r["name"], r["version"]) for r in rows) == [("tiny", f"v1/fold-{i}") for i in (1, 2, 3)]


@pytest.mark.parametrize("args, words", [
    (["--folds", "1"], "--folds"),
    (["--resume", "{tmp}"], "is not a cross-validation folder"),
    (["--folds", "3", "--devices", "2"], "--folds: cross-validation runs its folds in this process"),
    (["--folds", "2", "data.folds=3"], "--folds: sets data.folds and data.fold for each fold"),
])
def test_bad_fold_options_are_exit_2(args, words, tmp_path, write_config):
    cfg = write_config(tiny_digits_config())
    (tmp_path / "folds.json").write_text("not json")
    result = run_folds(cfg, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and words in result.output, result.output


@pytest.mark.parametrize("data, words", [
    ({"fold": 1}, "set both folds (how many) and fold"),
    ({"folds": 3, "fold": 3}, "folds are numbered 0 to 2"),
    ({"folds": 3, "fold": 0, "dataset": {"name": "text", "path": "t.txt"}}, "data.folds: dataset 'text' is one stream"),
])
def test_bad_fold_keys_are_config_errors(data, words):
    config = tiny_digits_config()
    config["data"].update(data)
    if data.get("dataset", {}).get("name") == "text":
        config["model"] = {"name": "lstm"}
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert any(words in p for p in err.value.problems), err.value.problems


def test_a_first_fold_failing_on_its_data_leaves_no_folder(tmp_path, write_config):
    config = tiny_digits_config()
    config["data"] = {"dataset": {"name": "csv", "path": str(tmp_path / "missing.csv")}, "batch_size": 8}
    result = run_folds(write_config(config), "--folds", 2, "--output-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.output
    assert not (tmp_path / "runs" / "tiny").exists()
