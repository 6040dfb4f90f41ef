"""The Task interface, for every registered task: the metric names config checks use are exactly the
ones its metrics produce at run time; its config-time half imports no torch; registry tags, not
name lists, decide what fits."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from dlcli.config import validate
from dlcli.data.loading import Batch
from dlcli.tasks import TASKS
from tests.conftest import REPO

B = 4


def _config(dataset: dict, model: dict | None = None) -> object:
    return validate({"name": "t", "data": {"dataset": dataset}, "model": model or {"name": "mlp"}})


def classification():
    config = _config({"name": "digits"})
    task = TASKS["classification"](lambda out, y, w: out.sum() * 0, 10)
    return config, task, 10, torch.randn(B, 10), Batch(torch.zeros(B, 3), torch.arange(B))


def regression():
    config = _config({"name": "csv", "path": "t.csv", "targets": ["a", "b"]})
    meta = SimpleNamespace(outputs={"targets": ["a", "b"], "mean": [0.0, 1.0], "std": [1.0, 2.0]})
    task = TASKS["regression"].create(config, meta, None)
    return config, task, None, torch.randn(B, 2), Batch(torch.zeros(B, 3), torch.randn(B, 2))


def multilabel():
    config = _config({"name": "csv", "path": "t.csv", "labels": ["a", "b", "c"]})
    task = TASKS["multilabel"].create(config, SimpleNamespace(class_names=["a", "b", "c"]), None)
    return config, task, None, torch.randn(B, 3), Batch(torch.zeros(B, 3), (torch.rand(B, 3) > 0.5).float())


def language_model():
    config = _config({"name": "text", "path": "t.txt"}, {"name": "lstm"})
    task = TASKS["language_model"](None, 7, bpc=True)  # characters (the text default): bits per character too
    return config, task, None, torch.randn(B, 5, 7), Batch(torch.zeros(B, 5), torch.randint(0, 7, (B, 5)))


def forecasting():
    config = _config({"name": "sine"}, {"name": "lstm"})
    meta = SimpleNamespace(sequence={"target_index": [0]}, feature_mean=[0.0], feature_std=[1.0])
    task = TASKS["forecasting"].create(config, meta, None)
    return config, task, None, torch.randn(B, 2, 1), Batch(torch.randn(B, 8, 1), torch.randn(B, 2, 1))


def gan():
    config = _config({"name": "digits"}, {"name": "gan", "generator": {}, "discriminator": {}})
    task = TASKS["gan"](None, False)
    outputs = {key: torch.tensor(0.5) for key in ("d_loss", "g_loss", "d_real", "d_fake")}
    return config, task, None, outputs, Batch(torch.zeros(B, 1, 8, 8), torch.zeros(B, dtype=torch.long))


EXAMPLES = {"classification": classification, "regression": regression, "multilabel": multilabel,
            "language_model": language_model, "forecasting": forecasting, "gan": gan}


@pytest.mark.parametrize("name", list(TASKS))
def test_declared_metric_names_are_the_ones_computed(name):
    assert name in EXAMPLES, f"add an example of task {name!r} to this test"
    config, task, classes, outputs, batch = EXAMPLES[name]()
    declared = set(task.metric_names(config, has_val=True, num_classes=classes)) - {"lr"}
    produced = set()
    for split, full in (("train", False), ("val", True)):
        metrics = task.metrics(torch.device("cpu"), full=full)
        metrics.update(torch.tensor(0.7), outputs, batch)
        produced |= set(metrics.compute(split))
    assert produced == declared


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_declares_what_config_checks_ask(name):
    task = TASKS[name]
    from dlcli.components.losses import LOSSES
    from dlcli.components.models import MODELS
    from dlcli.data.datasets import DATASETS

    assert task.default_loss in task.losses  # its default loss fits it
    assert set(task.losses) <= set(LOSSES.names()) and set(task.models) <= set(MODELS.names())
    assert task.datasets(), f"no dataset feeds task {name}"
    assert all(any(DATASETS.has_tag(d, kind) for d in DATASETS.names()) for kind in task.reads), task.reads
    assert task.metric_mode("val/loss") == "min"
    for metric in task.metric_names(None, has_val=True):
        assert task.metric_mode(metric) in ("min", "max")


def test_modes_follow_the_metric():
    assert TASKS["regression"].metric_mode("val/r2") == "max"
    assert TASKS["regression"].metric_mode("val/mae:price") == "min"
    assert TASKS["multilabel"].metric_mode("val/hamming") == "min"
    assert TASKS["multilabel"].metric_mode("val/f1_micro") == "max"
    assert TASKS["classification"].metric_mode("val/acc", "min") == "min"


def test_validating_any_task_imports_no_torch(tmp_path):
    code = ("import sys; from dlcli.config import validate\n"
            "for d in [{'name': 'csv', 'path': 't.csv', 'targets': 'y'}, {'name': 'csv', 'path': 't.csv', 'labels': ['a']},"
            " {'name': 'digits'}, {'name': 'sine'}]:\n"
            "    validate({'name': 't', 'data': {'dataset': d}, 'model': {'name': 'mlp'}})\n"
            "validate({'name': 't', 'data': {'dataset': {'name': 'digits'}}, 'model': {'name': 'gan', 'generator': {},"
            " 'discriminator': {}}})\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_checkpoint_written_before_the_task_redesign_still_evaluates(tmp_path, write_config):
    """Checkpoints from before regression/multilabel lack the new data-description fields (categories,
    targets, target statistics): they load with the defaults."""
    from dlcli.cli.progress import Progress
    from dlcli.config import load
    from dlcli.inference.evaluate import evaluate_checkpoint
    from dlcli.training import checkpoint
    from dlcli.training.session import train
    from tests.conftest import tiny_digits_config

    cfg = write_config(tiny_digits_config(train={"epochs": 1, "device": "cpu"}))
    run = train(load(str(cfg)), str(tmp_path / "runs"), None, Progress(1, quiet=True, stream=open("/dev/null", "w")))
    path = tmp_path / "old.pt"
    payload = checkpoint.load(run["checkpoints"]["last"])
    for key in ("categories", "outputs"):
        del payload["meta"][key]
    del payload["format"], payload["format_version"]
    checkpoint.save(payload, path)
    result = evaluate_checkpoint(str(path), "val", [], "cpu")
    assert result["metrics"]["acc"] == pytest.approx(run["final"]["val/acc"])
