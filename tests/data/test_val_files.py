"""A separate validation file or folder (`val_path`, `val_root`) for the datasets read from the
user's files: all of the training file trains, validation reads its own file with training's
vocabulary, statistics, column kinds and class order, and `eval --split val` reads it again."""

import io
import math
import shutil

import pytest
import torch

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.data.pipeline import train_batches
from dlcli.errors import DataError
from dlcli.inference.evaluate import evaluate_checkpoint
from dlcli.tasks import task_class
from dlcli.training.session import train
from tests.data.test_datasets import image_folder_config, make_image_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def config(dataset: dict, task: str, model: dict | None = None, **train_cfg) -> dict:
    return {"name": "valfile", "seed": 0, "task": task,
            "data": {"dataset": dataset, "val_split": 0.5, "batch_size": 8},
            "model": model or {"name": "mlp", "hidden": [8]}, "optimizer": {"name": "adam", "lr": 0.01},
            "train": {"epochs": 1, "device": "cpu", **train_cfg}}


def batches(cfg: dict):
    cfg = validate(cfg)
    return train_batches(cfg, CPU, torch.Generator().manual_seed(0), task_class(cfg.task_name))


def test_csv_val_file_keeps_training_class_order_and_column_kinds(tmp_path):
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("x,colour,label\n" + "".join(f"{i},{'red' if i % 2 else 'blue'},{'abc'[i % 3]}\n"
                                                      for i in range(30)))
    (tmp_path / "val.csv").write_text("x,colour,label\n1,red,c\n2,green,b\n3,blue,c\n")  # no class a
    dataset = {"name": "csv", "path": str(train_csv), "val_path": str(tmp_path / "val.csv")}
    train_b, val_b, meta = batches(config(dataset, "classification"))
    assert train_b.rows == 30  # val_split 0.5 is not used: all of the training file trains
    assert meta.class_names == ["a", "b", "c"]
    (batch,) = list(val_b)
    assert batch.y.tolist() == [2, 1, 2]  # training's class indices, not the val file's own (b=0, c=1)
    assert batch.x.shape[1] == meta.input_shape[0]  # 'colour' one-hot with training's values ('green': unknown)


def test_image_folder_val_root_is_read_with_training_class_order(tmp_path):
    make_image_folder(tmp_path / "train", per_class=3)
    make_image_folder(tmp_path / "val", per_class=2)
    shutil.rmtree(tmp_path / "val" / "blue")  # the val folder lacks class 0
    cfg = image_folder_config(tmp_path / "train", val_split=0.5)
    cfg["data"]["dataset"]["val_root"] = str(tmp_path / "val")
    cfg["data"]["batch_size"] = 4
    train_b, val_b, meta = batches(cfg)
    assert train_b.rows == 9 and meta.class_names == ["blue", "green", "red"]
    assert sorted(int(y) for batch in val_b for y in batch.y) == [1, 1, 2, 2]  # green, red in training's order


def test_text_and_timeseries_val_files_are_windowed_with_training_statistics(tmp_path):
    (tmp_path / "train.txt").write_text("abcd" * 50)
    (tmp_path / "val.txt").write_text("dcbaz" * 10)  # 'z' is not in the training vocabulary
    text = {"name": "text", "path": str(tmp_path / "train.txt"), "val_path": str(tmp_path / "val.txt"), "seq_len": 7}
    train_b, val_b, meta = batches(config(text, "language_model", {"name": "lstm", "hidden_size": 8}))
    assert train_b.rows == 199 // 7 and sum(len(b.y) for b in val_b) == 49 // 7
    assert meta.vocab[2:] == ["a", "b", "c", "d"] and any(int(t) == 1 for b in val_b for t in b.x.flatten())  # <unk>

    (tmp_path / "train.csv").write_text("v\n" + "".join(f"{math.sin(t / 3):.4f}\n" for t in range(60)))
    (tmp_path / "val.csv").write_text("v\n" + "".join(f"{10 + t}\n" for t in range(12)))
    series = {"name": "timeseries", "path": str(tmp_path / "train.csv"), "val_path": str(tmp_path / "val.csv"),
              "window": 4, "horizon": 2}
    train_b, val_b, meta = batches(config(series, "forecasting", {"name": "lstm", "hidden_size": 8}))
    assert train_b.rows == 60 - 6 + 1 and sum(len(b.y) for b in val_b) == 12 - 6 + 1
    (first,) = list(val_b)
    assert float(first.y[0, 0, 0]) == pytest.approx((14 - meta.feature_mean[0]) / meta.feature_std[0], rel=1e-5)


def test_text_classification_val_file_and_eval_split_val(tmp_path):
    rows = [("good fun", "pos"), ("bad dull", "neg"), ("fun good fun", "pos"), ("dull bad", "neg")] * 6
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    (tmp_path / "val.csv").write_text("text,label\ngood,pos\nbad,neg\ndull fun,neg\n")
    dataset = {"name": "text_classification", "path": str(tmp_path / "train.csv"),
               "val_path": str(tmp_path / "val.csv")}
    cfg = validate(config(dataset, "classification", {"name": "lstm", "hidden_size": 8}))
    summary = train(cfg, str(tmp_path / "runs"), None, Progress(1, quiet=True, stream=io.StringIO()))
    result = evaluate_checkpoint(summary["checkpoints"]["last"], "val", [], "cpu")
    assert result["samples"] == 3  # the val file, read again by eval
    assert result["metrics"]["acc"] == pytest.approx(summary["final"]["val/acc"])
    assert result["metrics"]["loss"] == pytest.approx(summary["final"]["val/loss"], rel=1e-5)


def test_a_missing_val_file_is_a_data_error_naming_it(tmp_path):
    (tmp_path / "train.txt").write_text("abcd" * 50)
    text = {"name": "text", "path": str(tmp_path / "train.txt"), "val_path": str(tmp_path / "nope.txt"), "seq_len": 7}
    with pytest.raises(DataError, match="nope.txt"):
        batches(config(text, "language_model", {"name": "lstm", "hidden_size": 8}))
