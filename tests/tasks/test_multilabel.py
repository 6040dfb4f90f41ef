"""task: multilabel: scikit-learn's make_multilabel_classification written as CSV (micro-F1 well above
the all-negative and all-positive baselines), an image folder with labels.csv, the threshold, infer
output, and bad inputs."""

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dlcli.config import validate
from dlcli.errors import ConfigError

LABELS = ["l0", "l1", "l2", "l3"]


def write_table(path: Path, header: list[str], rows) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path, float, float]:
    """(train.csv, test.csv, the test split's share of positive label decisions, the micro-F1 of
    scikit-learn's one-vs-rest logistic regression on the same split)."""
    from sklearn.datasets import make_multilabel_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    folder = tmp_path_factory.mktemp("multilabel")
    x, y = make_multilabel_classification(n_samples=800, n_features=20, n_classes=4, n_labels=1, random_state=0)
    header = [f"f{i}" for i in range(20)] + LABELS
    rows = [[*a, *b] for a, b in zip(x.tolist(), y.tolist())]
    train = write_table(folder / "train.csv", header, rows[:600])
    test = write_table(folder / "test.csv", header, rows[600:])
    scale = StandardScaler().fit(x[:600])
    linear = OneVsRestClassifier(LogisticRegression(max_iter=2000)).fit(scale.transform(x[:600]), y[:600])
    reference = f1_score(y[600:], linear.predict(scale.transform(x[600:])), average="micro")
    return train, test, float(y[600:].mean()), float(reference)


def multilabel_config(train: Path, test: Path, **train_section) -> dict:
    return {"name": "ml", "seed": 0,
            "data": {"dataset": {"name": "csv", "path": str(train), "test_path": str(test), "labels": LABELS},
                     "batch_size": 32},
            "model": {"name": "mlp", "hidden": [64]},
            "optimizer": {"name": "adam", "lr": 0.003},
            "train": {"epochs": 15, "device": "cpu", "monitor": "val/f1_micro", **train_section}}


def test_the_task_follows_from_labels_with_bce_by_default(tables):
    config = validate(multilabel_config(*tables[:2]))
    assert config.task == "multilabel" and config.loss["name"] == "bce_with_logits"


def test_micro_f1_beats_the_all_negative_and_all_positive_baselines(tables, tmp_path, write_config, run_cli):
    train, test, positive_rate, logistic = tables
    cfg = write_config(multilabel_config(train, test))
    trained = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", "--json")
    assert trained.returncode == 0, trained.stderr
    run = json.loads(trained.stdout)["run_dir"]
    result = json.loads(run_cli("eval", run, "--json").stdout)
    metrics = result["metrics"]
    assert set(metrics) == {"loss", "f1_micro", "f1_macro", "subset_acc", "hamming"}
    all_positive = 2 * positive_rate / (1 + positive_rate)  # every label predicted; all-negative scores 0
    assert metrics["f1_micro"] > all_positive + 0.2, (metrics, all_positive)
    assert metrics["f1_micro"] > logistic - 0.05, (metrics, logistic)  # scikit-learn's linear model: ~0.74
    assert metrics["hamming"] < min(positive_rate, 1 - positive_rate)  # fewer wrong decisions than either
    assert result["labels"] == LABELS and result["threshold"] == 0.5
    rows = json.loads(run_cli("infer", run, test, "--json").stdout)
    assert len(rows) == 200 and set(rows[0]["probabilities"]) == set(LABELS)
    for row in rows[:20]:
        assert row["labels"] == sorted((l for l in LABELS if row["probabilities"][l] > 0.5),
                                       key=lambda l: -row["probabilities"][l])
    out = tmp_path / "labels.csv"
    assert run_cli("infer", run, test, "--output", out).returncode == 0
    assert next(csv.reader(out.open())) == ["input", "labels", *LABELS]
    table = run_cli("infer", run, test)
    assert table.returncode == 0 and "labels" in table.stdout


def test_the_threshold_decides_the_metrics(tables):
    from dlcli.tasks.multilabel import MultilabelMetrics

    metrics = {t: MultilabelMetrics(2, t, torch.device("cpu")) for t in (0.5, 0.9)}
    logits = torch.tensor([[1.0, -3.0], [1.0, 3.0]])  # probabilities 0.73 / 0.05 and 0.73 / 0.95
    batch = type("B", (), {"y": torch.tensor([[1.0, 0.0], [1.0, 1.0]])})()
    for m in metrics.values():
        m.update(torch.tensor(0.0), logits, batch)
    assert metrics[0.5].compute("val")["val/subset_acc"] == 1.0
    assert metrics[0.9].compute("val")["val/subset_acc"] == 0.0  # 0.73 no longer counts as l0
    assert metrics[0.9].compute("val")["val/hamming"] == 0.5
    assert validate(multilabel_config(*tables[:2], threshold=0.9)).train.threshold == 0.9


def test_an_image_folder_with_labels_csv_trains_and_infers(tmp_path, write_config, run_cli):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for i in range(48):  # solid colours: which of red / green / blue is on are the three labels
        on = [(i >> bit) & 1 for bit in range(3)]
        Image.new("RGB", (8, 8), tuple(255 * v for v in on)).save(folder / f"img{i}.png")
        rows.append([f"img{i}.png", *on])
    write_table(folder / "labels.csv", ["file", "red", "green", "blue"], rows)
    cfg = write_config({"name": "rgb", "data": {"dataset": {"name": "image_folder", "root": str(folder),
                                                            "labels": "labels.csv"}, "batch_size": 8, "val_split": 0.25},
                        "model": {"name": "mlp", "hidden": [16]}, "optimizer": {"name": "adam", "lr": 0.02},
                        "train": {"epochs": 20, "device": "cpu", "monitor": "val/f1_micro"}})
    trained = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["best"]["value"] == 1.0
    predicted = json.loads(run_cli("infer", json.loads(trained.stdout)["run_dir"], folder / "img5.png", "--json").stdout)
    assert sorted(predicted[0]["labels"]) == ["blue", "red"]  # 5 = red + blue


def invoke(*args):
    from dlcli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_label_value_other_than_0_or_1_is_exit_3_naming_the_place(tmp_path, write_config):
    table = write_table(tmp_path / "bad.csv", ["x", "a", "b"], [[1, 0, 1], [2, 2, 0]])
    cfg = write_config({"name": "bad", "data": {"dataset": {"name": "csv", "path": str(table), "labels": ["a", "b"]}},
                        "model": {"name": "mlp"}, "train": {"device": "cpu"}})
    result = invoke("train", cfg, "--output-dir", tmp_path / "runs")
    assert result.exit_code == 3, result.stderr
    assert "bad.csv:3" in result.stderr and "'a'" in result.stderr and "0 or 1" in result.stderr


def test_pos_weight_needs_one_value_per_label(tables, tmp_path, write_config):
    config = multilabel_config(*tables[:2])
    config["loss"] = {"name": "bce_with_logits", "pos_weight": [2.0, 1.0]}
    result = invoke("train", write_config(config), "--output-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.stderr
    assert "loss.pos_weight: 2 values for 4 outputs" in result.stderr and not (tmp_path / "runs").exists()


def test_pos_weight_scales_the_positive_terms():
    from dlcli.components.losses import LOSSES

    plain = LOSSES.build(LOSSES.validate({"name": "bce_with_logits"}, "loss"))
    weighted = LOSSES.build(LOSSES.validate({"name": "bce_with_logits", "pos_weight": [3.0, 1.0]}, "loss"))
    logits, target = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    # positive term of label 0 is log 2 per output, x3 with the weight; label 1's negative term stays
    assert float(weighted(logits, target)) == pytest.approx(float(plain(logits, target)) * 2, rel=1e-6)


@pytest.mark.parametrize("config, key", [
    ({"data": {"dataset": {"name": "digits"}}, "model": {"name": "mlp"}, "train": {"threshold": 0.7}}, "train.threshold"),
    ({"data": {"dataset": {"name": "csv", "path": "t.csv", "labels": ["a"]}}, "model": {"name": "mlp"},
      "loss": {"name": "mse"}}, "loss.name"),
    ({"data": {"dataset": {"name": "csv", "path": "t.csv", "labels": ["a"]}}, "model": {"name": "mlp"},
      "train": {"monitor": "val/acc"}}, "train.monitor"),
    ({"data": {"dataset": {"name": "csv", "path": "t.csv", "labels": ["a"]}}, "model": {"name": "mlp"},
      "train": {"threshold": 1.5}}, "train.threshold"),
])
def test_multilabel_config_errors_name_the_key(config, key):
    with pytest.raises(ConfigError) as err:
        validate({"name": "m", **config})
    assert any(p.startswith(f"{key}:") for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("name", ["../outside.png", "/tmp/outside.png", "sub/../../outside.png"])
def test_labels_csv_may_not_name_images_outside_its_folder(name, tmp_path):
    from PIL import Image

    from dlcli.data.datasets import DATASETS
    from dlcli.errors import DataError

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (4, 4)).save(folder / "in.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    write_table(folder / "labels.csv", ["file", "a"], [["in.png", 1], [name, 0]])
    with pytest.raises(DataError, match=r"labels.csv:3: .* lies outside the folder"):
        DATASETS.build({"name": "image_folder", "root": str(folder), "labels": "labels.csv"}, "train")
