"""task: regression on CSV tables, end to end through the real CLI: scikit-learn's bundled diabetes
data written as CSV (an MLP beats the training-mean baseline and reaches test R² >= 0.40), two
targets, categorical feature columns, exact mid-epoch resume, export, and bad tables (exit 3)."""

import csv
import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from dlcli.config import validate
from dlcli.errors import ConfigError
from tests.conftest import tiny_digits_config, train_then_resume


def write_table(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory) -> Path:
    """load_diabetes as train.csv (352 rows) and test.csv (90 rows), with a categorical `site` column."""
    from sklearn.datasets import load_diabetes

    folder = tmp_path_factory.mktemp("diabetes")
    data = load_diabetes()
    rows = [[*x, ["north", "south", "east"][i % 3], y] for i, (x, y) in enumerate(zip(data.data.tolist(),
                                                                                     data.target.tolist()))]
    random.Random(0).shuffle(rows)
    header = [*data.feature_names, "site", "progression"]
    write_table(folder / "train.csv", header, rows[:352])
    write_table(folder / "test.csv", header, rows[352:])
    return folder


def regression_config(folder: Path, **dataset) -> dict:
    return {"name": "reg", "seed": 0,
            "data": {"dataset": {"name": "csv", "path": str(folder / "train.csv"), "test_path": str(folder / "test.csv"),
                                 "targets": "progression", **dataset}, "batch_size": 32},
            "model": {"name": "mlp", "hidden": [64], "dropout": 0.1},
            "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
            "train": {"epochs": 60, "device": "cpu", "monitor": "val/mae", "log_interval": 1000}}


def test_the_task_follows_from_targets_with_mse_by_default(diabetes):
    config = validate(regression_config(diabetes))
    assert config.task == "regression" and config.loss["name"] == "mse"
    assert config.data.dataset["targets"] == "progression"


def test_an_mlp_beats_the_mean_baseline_on_diabetes_and_reaches_r2_040(diabetes, tmp_path, write_config, run_cli):
    cfg = write_config(regression_config(diabetes))
    trained = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", "--json")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert {"val/mae", "val/rmse", "val/r2", "val/baseline_mae"} <= set(summary["final"])
    result = run_cli("eval", summary["run_dir"], "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    # Linear least squares reaches about 0.45 here; the training mean's error is what a model must beat.
    assert metrics["r2"] >= 0.40, metrics
    assert metrics["mae"] < 0.8 * metrics["baseline_mae"], metrics
    assert 20 < metrics["mae"] < 80  # in the data's own units (disease progression, 25..346), not z-scores
    predicted = run_cli("infer", summary["run_dir"], diabetes / "test.csv", "--json")
    assert predicted.returncode == 0, predicted.stderr
    rows = json.loads(predicted.stdout)
    assert len(rows) == 90 and rows[0]["input"].endswith("test.csv:2") and 25 < rows[0]["progression"] < 350
    out = tmp_path / "preds.csv"
    written = run_cli("infer", summary["run_dir"], diabetes / "test.csv", "--output", out)
    assert written.returncode == 0, written.stderr
    assert next(csv.reader(out.open()))[:2] == ["input", "progression"]


def linear_table(path: Path, n: int = 400, seed: int = 0) -> Path:
    """Two targets that are known linear functions of three features (plus a little noise)."""
    gen = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, c = (gen.uniform(-1, 1) for _ in range(3))
        rows.append([a, b, c, 3 * a - b + 0.01 * gen.gauss(0, 1), 100 + 20 * c + 0.1 * gen.gauss(0, 1)])
    return write_table(path, ["a", "b", "c", "y1", "y2"], rows)


def test_two_targets_get_metrics_per_target_and_averaged(tmp_path, write_config, run_cli):
    table = linear_table(tmp_path / "two.csv")
    cfg = write_config({"name": "two", "data": {"dataset": {"name": "csv", "path": str(table), "targets": ["y1", "y2"]},
                                                "val_split": 0.25, "batch_size": 32},
                        "model": {"name": "mlp", "hidden": []},  # a linear model
                        "optimizer": {"name": "adam", "lr": 0.05},
                        "train": {"epochs": 40, "device": "cpu", "monitor": "val/r2:y2"}})
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", "--json")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)["final"]
    assert final["val/r2:y1"] > 0.99 and final["val/r2:y2"] > 0.99
    assert final["val/mae"] == pytest.approx((final["val/mae:y1"] + final["val/mae:y2"]) / 2)
    assert final["val/mae:y2"] < 0.5  # y2 spans 80..120: reported in its own units
    rows = json.loads(run_cli("infer", json.loads(result.stdout)["run_dir"], table, "--json").stdout)
    assert set(rows[0]) == {"input", "y1", "y2"}


def test_a_monitored_per_target_metric_must_name_a_target(tmp_path):
    config = {"name": "m", "data": {"dataset": {"name": "csv", "path": "t.csv", "targets": ["y1", "y2"]}},
              "model": {"name": "mlp"}, "train": {"monitor": "val/r2:y3"}}
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert any(p.startswith("train.monitor:") and "val/r2:y2" in p for p in err.value.problems)


def test_categorical_columns_are_one_hot_and_unseen_values_are_counted(tmp_path, write_config, run_cli):
    gen = random.Random(1)
    cities = {"oslo": 10.0, "rome": 20.0, "lima": 30.0}
    rows = [[x, city, cities[city] + x + 0.01 * gen.gauss(0, 1)]
            for x, city in ((gen.uniform(0, 1), gen.choice(list(cities))) for _ in range(300))]
    table = write_table(tmp_path / "city.csv", ["x", "city", "price"], rows)
    test = write_table(tmp_path / "new.csv", ["x", "city", "price"], [[0.5, "rome", 20.5], [0.5, "paris", 0.0]])
    cfg = write_config({"name": "city", "data": {"dataset": {"name": "csv", "path": str(table), "test_path": str(test),
                                                             "targets": ["price"]}, "batch_size": 32},
                        "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adam", "lr": 0.02},
                        "train": {"epochs": 30, "device": "cpu"}})
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)["run_dir"]
    assert "input [5]" in result.stderr  # x, then oslo/rome/lima (in frequency order) + the unknown slot
    assert json.loads(result.stdout)["final"]["val/mae"] < 1.0  # the city decides most of the price
    evaluated = json.loads(run_cli("eval", run, "--json").stdout)
    assert evaluated["unknown_categories"] == {"city": 1}
    rows = json.loads(run_cli("infer", run, test, "--json").stdout)
    assert rows[0]["unseen"] == "" and rows[1]["unseen"] == "city"
    assert rows[0]["price"] == pytest.approx(20.5, abs=1.5)
    plain = run_cli("eval", run)
    assert "values not seen in training" in plain.stdout and "city: 1" in plain.stdout


def test_numeric_and_categorical_override_the_detection(tmp_path):
    from dlcli.data.datasets import DATASETS

    table = write_table(tmp_path / "t.csv", ["zip", "x", "y"], [[1000, 1, 2], [2000, 2, 4], [1000, 3, 6]])
    spec = {"name": "csv", "path": str(table), "targets": "y", "categorical": ["zip"]}
    source = DATASETS.build(DATASETS.validate(spec, "data.dataset"), "train")
    assert source.feature_names == ["x"] and source.table == {"zip": ["1000", "2000", "1000"]}
    spec = {"name": "csv", "path": str(table), "targets": "y"}
    assert DATASETS.build(DATASETS.validate(spec, "data.dataset"), "train").feature_names == ["zip", "x"]


@pytest.mark.parametrize("rows, dataset, expected", [
    ([[1, 2.0], [2, "high"]], {}, [":3", "'y'", "not a number: 'high'"]),
    ([[1, 2.0], [2, ""]], {}, [":3", "'y'", "missing value"]),
    ([[1, 2.0], [2, 2.0], [3, 2.0]], {}, ["'y'", "constant"]),
    ([[1, 2.0], [2, 3.0]], {"features": ["x", "y"]}, ["['y']", "both features and targets"]),
    ([[1, 2.0], [2, "1e39"], [3, 1.0]], {}, [":3", "'y'", "beyond float32's range"]),
    ([[1, 2.0], ["-1e39", 1.0], [3, 1.0]], {}, [":3", "'x'", "beyond float32's range"]),
], ids=["text-target", "missing-target", "constant-target", "target-is-feature", "huge-target", "huge-feature"])
def test_bad_targets_are_exit_3_naming_file_and_column(rows, dataset, expected, tmp_path, write_config):
    from typer.testing import CliRunner

    from dlcli.cli import app

    table = write_table(tmp_path / "bad.csv", ["x", "y"], rows)
    cfg = write_config({"name": "bad", "data": {"dataset": {"name": "csv", "path": str(table), "targets": "y", **dataset},
                                                "val_split": 0}, "model": {"name": "mlp"},
                        "train": {"device": "cpu", "monitor": "train/loss"}})
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "bad.csv" in result.stderr and all(words in result.stderr for words in expected), result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change, key", [
    ({"loss": {"name": "cross_entropy"}}, "loss.name"),
    ({"data": {"dataset": {"name": "digits"}}, "task": "regression"}, "task"),
    ({"data": {"dataset": {"name": "csv", "path": "t.csv", "targets": "y"}, "class_weights": "balanced"}},
     "data.class_weights"),
])
def test_regression_config_errors_name_the_key(change, key):
    config = {"name": "r", "data": {"dataset": {"name": "csv", "path": "t.csv", "targets": "y"}},
              "model": {"name": "mlp"}, **change}
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert any(p.startswith(f"{key}:") for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("loss", ["mse", "l1", "huber", "smooth_l1"])
def test_each_regression_loss_trains_with_sample_weights(loss, tmp_path):
    from dlcli.cli.progress import Progress
    from dlcli.training.build import build_trainer

    table = linear_table(tmp_path / "w.csv", n=200)
    with table.open() as handle:  # a weight column: rows of the second half count double
        rows = list(csv.reader(handle))
    write_table(table, [*rows[0], "w"], [[*r, 1 + (i >= 100)] for i, r in enumerate(rows[1:])])
    config = validate({"name": "w", "data": {"dataset": {"name": "csv", "path": str(table), "targets": ["y1"],
                                                         "features": ["a", "b", "c"], "weight": "w"}},
                       "model": {"name": "mlp", "hidden": []}, "loss": {"name": loss},
                       "optimizer": {"name": "adam", "lr": 0.05}, "train": {"epochs": 1, "device": "cpu"}})
    trainer, meta = build_trainer(config)
    assert trainer.train_batches.weights is not None
    losses = [trainer.train_epoch(Progress(1, quiet=True, stream=open("/dev/null", "w")))["train/loss"]
              for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_mid_epoch_resume_of_a_regression_is_bitwise_exact(diabetes, tmp_path, write_config, run_cli):
    config = regression_config(diabetes)
    config["train"] = {"epochs": 2, "device": "cpu", "log_interval": 3, "checkpoint_every": {"steps": 4},
                       "keep_last": 100}
    a, b = train_then_resume(run_cli, write_config(config), tmp_path, "reg", 4)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert b["meta"]["outputs"] == a["meta"]["outputs"]


def test_a_regression_model_exports_to_every_format(tmp_path, write_config):
    from dlcli.cli.progress import Progress
    from dlcli.config import load
    from dlcli.inference.export import export
    from dlcli.training.session import train

    table = linear_table(tmp_path / "e.csv", n=100)
    cfg = write_config({"name": "e", "data": {"dataset": {"name": "csv", "path": str(table), "targets": ["y1", "y2"]}},
                        "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "device": "cpu"}})
    run = train(load(str(cfg)), str(tmp_path / "runs"), None, Progress(1, quiet=True, stream=open("/dev/null", "w")))
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt"), ("safetensors", ".safetensors")):
        result = export(run["run_dir"], fmt, str(tmp_path / f"model{suffix}"), 1e-4)
        assert result["max_abs_diff"] <= 1e-4 and result["input_shape"] == ["batch", 3]


def test_a_regression_checkpoint_from_before_meta_outputs_evaluates_the_same(tmp_path, write_config):
    """dlcli 0.1 checkpoints kept the target statistics as meta.targets/target_mean/target_std; they
    load into meta.outputs and evaluate to the same numbers."""
    from dlcli.cli.progress import Progress
    from dlcli.config import load
    from dlcli.inference.evaluate import evaluate_checkpoint
    from dlcli.training import checkpoint
    from dlcli.training.session import train

    table = linear_table(tmp_path / "old.csv", n=120)
    cfg = write_config({"name": "o", "data": {"dataset": {"name": "csv", "path": str(table), "targets": ["y1", "y2"]}},
                        "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2, "device": "cpu"}})
    run = train(load(str(cfg)), str(tmp_path / "runs"), None, Progress(1, quiet=True, stream=open("/dev/null", "w")))
    payload = checkpoint.load(run["checkpoints"]["last"])
    outputs = payload["meta"].pop("outputs")
    payload["meta"].update(targets=outputs["targets"], target_mean=outputs["mean"], target_std=outputs["std"])
    checkpoint.save(payload, tmp_path / "old.pt")
    old, new = (evaluate_checkpoint(str(path), "val", [], "cpu")["metrics"]
                for path in (tmp_path / "old.pt", run["checkpoints"]["last"]))
    assert old == new and old["mae"] == pytest.approx(run["final"]["val/mae"])


def test_classification_tables_take_categorical_columns_too(tmp_path, write_config, run_cli):
    rows = [[i % 7, ["red", "blue"][i % 2], ["a", "b"][i % 2]] for i in range(120)]
    table = write_table(tmp_path / "c.csv", ["n", "colour", "label"], rows)
    cfg = write_config({**tiny_digits_config(), "name": "c",
                        "data": {"dataset": {"name": "csv", "path": str(table)}, "batch_size": 16},
                        "train": {"epochs": 15, "device": "cpu", "monitor": "val/acc"}})
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["best"]["value"] == 1.0  # the colour gives the label away
    assert yaml.safe_load((Path(json.loads(result.stdout)["run_dir"]) / "config.yaml").read_text())["task"] == \
        "classification"


@pytest.mark.parametrize("dataset, key, words", [
    ({"targets": ["y"], "labels": ["a"]}, "data.dataset.targets", "mean task: regression"),
    ({"targets": []}, "data.dataset.targets", "mean task: regression"),
    ({"targets": ["y", "y"]}, "data.dataset.targets", "more than once"),
    ({"targets": ["y"], "categorical": ["x"], "numeric": ["x"]}, "data.dataset.categorical", "one or the other"),
    ({"targets": 2023}, "data.dataset.targets", "valid list"),
    ({"targets": ["y"], "features": ["x", "x"]}, "data.dataset.features", "named more than once"),
    ({"targets": ["y"], "categorical": ["c", "c"]}, "data.dataset.categorical", "named more than once"),
    ({"targets": ["y"], "weight": "y"}, "data.dataset.weight", "also one of the targets"),
    ({"targets": ["input"]}, "data.dataset.targets", "overwritten in infer's output"),
    ({"labels": ["a", "unseen"]}, "data.dataset.labels", "overwritten in infer's output"),
], ids=["targets-and-labels", "empty-targets", "repeated-target", "categorical-and-numeric", "number",
        "repeated-feature", "repeated-categorical", "weight-is-target", "target-named-input", "label-named-unseen"])
def test_contradicting_table_options_are_config_errors(dataset, key, words):
    with pytest.raises(ConfigError) as err:
        validate({"name": "t", "data": {"dataset": {"name": "csv", "path": "t.csv", **dataset}}, "model": {"name": "mlp"}})
    assert any(p.startswith(f"{key}:") and words in p for p in err.value.problems), err.value.problems


def test_a_missing_cell_in_a_numeric_column_is_exit_3_not_a_category(tmp_path, write_config):
    from typer.testing import CliRunner

    from dlcli.cli import app

    table = write_table(tmp_path / "na.csv", ["rooms", "city", "price"],
                        [[3, "oslo", 1.0], ["n/a", "rome", 2.0], [4, "oslo", 3.0]])
    cfg = write_config({"name": "na", "data": {"dataset": {"name": "csv", "path": str(table), "targets": "price"},
                                               "val_split": 0}, "model": {"name": "mlp"},
                        "train": {"device": "cpu", "monitor": "train/loss"}})
    result = CliRunner().invoke(app, ["train", str(cfg), "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3, result.stderr
    assert "na.csv:3: column 'rooms': missing value" in result.stderr


def test_r2_is_nan_when_the_split_targets_do_not_vary_and_json_stays_standard(tmp_path, write_config):
    from typer.testing import CliRunner

    from dlcli.cli import app
    from dlcli.cli.progress import Progress
    from dlcli.config import load
    from dlcli.training.session import train

    table = linear_table(tmp_path / "t.csv", n=120)
    constant = write_table(tmp_path / "c.csv", ["a", "b", "c", "y1", "y2"], [[0.1 * i, 1, 2, 5.0, 5.0]
                                                                                 for i in range(6)])
    cfg = write_config({"name": "r", "data": {"dataset": {"name": "csv", "path": str(table), "test_path": str(constant),
                                                          "targets": ["y1", "y2"]}},
                        "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "device": "cpu"}})
    run = train(load(str(cfg)), str(tmp_path / "runs"), None, Progress(1, quiet=True, stream=open("/dev/null", "w")))
    result = CliRunner().invoke(app, ["eval", run["run_dir"], "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]  # strict JSON: no bare NaN
    assert metrics["r2"] == "nan" and metrics["r2:y1"] == "nan" and metrics["mae"] > 0
