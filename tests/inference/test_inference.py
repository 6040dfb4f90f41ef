"""eval and infer from a checkpoint alone, for a tabular (CSV) model: label names, standardization."""

import csv
import io
import random

import pytest

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import DataError
from dlcli.inference.evaluate import evaluate_checkpoint
from dlcli.inference.predict import infer
from dlcli.training.session import train


def write_table(path, n, seed):
    """Two blobs far from the origin (so standardization matters): 'cat' near (100, 5), 'dog' near (110, -5)."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["height", "weight", "species"])
        for i in range(n):
            cat = i % 2 == 0
            writer.writerow([100 + (0 if cat else 10) + rng.gauss(0, 1), (5 if cat else -5) + rng.gauss(0, 1),
                             "cat" if cat else "dog"])


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tabular")
    write_table(root / "train.csv", 200, seed=1)
    write_table(root / "test.csv", 40, seed=2)
    config = validate({
        "name": "tab", "seed": 0,
        "data": {"dataset": {"name": "csv", "path": str(root / "train.csv"), "label": "species",
                             "test_path": str(root / "test.csv")}, "val_split": 0.2, "batch_size": 32},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adam", "lr": 0.05},
        "train": {"epochs": 5, "device": "cpu", "log_interval": 5},  # best = lowest val/loss
    })
    summary = train(config, str(root / "runs"), None, Progress(5, quiet=True, stream=io.StringIO()))
    return root, summary


def test_training_logs_steps_and_epochs(tabular_run):
    import json
    from pathlib import Path

    _, summary = tabular_run
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert {r["event"] for r in records} == {"step", "epoch"}
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2, 3, 4, 5]
    assert all("train/loss" in r and "lr" in r for r in records)


def test_eval_uses_the_test_file_and_class_names(tabular_run):
    _, summary = tabular_run
    result = evaluate_checkpoint(summary["checkpoints"]["best"], "test", [], "cpu")
    assert result["samples"] == 40
    assert result["class_names"] == ["cat", "dog"]
    assert result["metrics"]["acc"] >= 0.95


def test_infer_on_csv_rows_standardizes_with_training_statistics(tabular_run, tmp_path):
    _, summary = tabular_run
    rows = tmp_path / "new.csv"
    rows.write_text("weight,height\n5,100\n-5,110\n")  # column order differs; no label column
    kind, predictions = infer(summary["checkpoints"]["best"], [str(rows)], "cpu", top_k=2)
    assert kind == "classes"
    assert [p["class"] for p in predictions] == ["cat", "dog"]
    assert all(p["probability"] > 0.8 and len(p["top_k"]) == 2 for p in predictions)


def test_infer_rejects_inputs_of_the_wrong_kind(tabular_run, tmp_path):
    _, summary = tabular_run
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="x.png"):
        infer(summary["checkpoints"]["best"], [str(image)], "cpu", top_k=1)
    missing = tmp_path / "missing_cols.csv"
    missing.write_text("height\n100\n")
    with pytest.raises(DataError, match="weight"):
        infer(summary["checkpoints"]["best"], [str(missing)], "cpu", top_k=1)
    short = tmp_path / "short_row.csv"
    short.write_text("weight,height\n5,100\n-5\n")
    with pytest.raises(DataError, match="short_row.csv:3: expected 2 fields"):
        infer(summary["checkpoints"]["best"], [str(short)], "cpu", top_k=1)


def test_infer_output_never_overwrites_an_input(tabular_run, tmp_path):
    from typer.testing import CliRunner

    from dlcli.cli import app

    _, summary = tabular_run
    rows = tmp_path / "new.csv"
    rows.write_text("weight,height\n5,100\n")
    result = CliRunner().invoke(app, ["infer", summary["checkpoints"]["best"], str(rows), "--output", str(rows)])
    assert result.exit_code == 2 and "is the file this command reads" in result.stderr, result.output
    assert rows.read_text() == "weight,height\n5,100\n"


def test_bad_device_and_model_override_are_clear_errors(tabular_run):
    from dlcli.errors import CheckpointError, ConfigError

    _, summary = tabular_run
    with pytest.raises(ConfigError, match="device: expected auto, cpu, cuda or cuda:N"):
        evaluate_checkpoint(summary["checkpoints"]["best"], "test", [], "gpu")
    with pytest.raises(CheckpointError, match="do not fit the model"):
        evaluate_checkpoint(summary["checkpoints"]["best"], "test", ["model.hidden=[8]"], "cpu")


def test_infer_output_checks_write_nothing_and_refuse_input_folders(tabular_run, tmp_path):
    from typer.testing import CliRunner

    from dlcli.cli import app

    _, summary = tabular_run
    rows = tmp_path / "in"
    rows.mkdir()
    (rows / "new.csv").write_text("weight,height\n5,100\n")
    inside = CliRunner().invoke(app, ["infer", summary["checkpoints"]["best"], str(rows), "--output",
                                      str(rows / "preds.csv")])
    assert inside.exit_code == 2 and "inside the input folder" in inside.stderr, inside.output
    wrong_kind = CliRunner().invoke(app, ["infer", summary["checkpoints"]["best"], str(rows / "new.csv"),
                                          "--output", str(tmp_path / "new" / "preds.png")])
    assert wrong_kind.exit_code == 2 and not (tmp_path / "new").exists()  # no folder left by a usage error
    written = CliRunner().invoke(app, ["infer", summary["checkpoints"]["best"], str(rows / "new.csv"),
                                       "--output", str(tmp_path / "out" / "preds.csv")])
    assert written.exit_code == 0 and (tmp_path / "out" / "preds.csv").exists()
