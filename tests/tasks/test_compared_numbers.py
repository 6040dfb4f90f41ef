"""The numbers users compare with other tools: plain NLL next to a smoothed loss, 4 significant
digits in summaries, train.threads, throughput in the task's unit, and continuous labels refused."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from dlcli.cli.progress import Progress, number
from dlcli.cli.report import print_train_summary
from dlcli.config import validate
from dlcli.data.loading import Batch
from dlcli.errors import DataError, listed
from dlcli.inference.evaluate import evaluate_checkpoint
from dlcli.tasks.classify import ClassificationMetrics, ClassificationTask, looks_continuous
from dlcli.tasks.language_model import LanguageModelTask
from dlcli.training.build import build_trainer
from dlcli.training.session import train
from tests.conftest import tiny_digits_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoothed_run(tmp_path_factory):
    """A digits classifier trained with label smoothing 0.2 (one epoch)."""
    config = validate(tiny_digits_config(loss={"name": "cross_entropy", "label_smoothing": 0.2},
                                         train={"epochs": 1, "device": "cpu"}))
    root = tmp_path_factory.mktemp("runs")
    return train(config, str(root), None, Progress(1, quiet=True, stream=io.StringIO()))


def test_nll_is_the_plain_cross_entropy_of_the_logits():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(50, 4, generator=g), torch.randint(0, 4, (50,), generator=g)
    metrics = ClassificationMetrics(4, torch.device("cpu"), nll=True)
    for rows in (slice(0, 20), slice(20, 50)):
        metrics.update(torch.tensor(9.0), logits[rows], Batch(None, target[rows]))
    out = metrics.compute("val")
    assert out["val/nll"] == pytest.approx(float(F.cross_entropy(logits, target)), rel=1e-6)
    assert out["val/loss"] == pytest.approx(9.0)  # the training loss is kept as it was


def test_nll_only_named_and_computed_with_label_smoothing():
    plain = validate(tiny_digits_config())
    smoothed = validate(tiny_digits_config(loss={"name": "cross_entropy", "label_smoothing": 0.1}))
    assert "val/nll" not in ClassificationTask.metric_names(plain, True, 10)
    assert "val/nll" in ClassificationTask.metric_names(smoothed, True, 10)
    assert "train/nll" not in ClassificationTask.metric_names(smoothed, True, 10)  # training stays cheap


def test_eval_reports_nll_below_the_smoothed_loss(smoothed_run):
    result = evaluate_checkpoint(smoothed_run["checkpoints"]["last"], "val", [], "cpu")
    metrics = result["metrics"]
    assert metrics["nll"] < metrics["loss"]  # the smoothing floor is in the loss, not in the NLL
    assert smoothed_run["final"]["val/nll"] == pytest.approx(metrics["nll"], rel=1e-5)


@pytest.mark.parametrize("value, text", [(0.0001475, "0.0001475"), (0.98934, "0.9893"), (445.23, "445.2"),
                                         (0.75, "0.7500"), (12345.6, "12346"), (0.0, "0.000"),
                                         (math.inf, "inf")])
def test_numbers_keep_four_significant_digits(value, text):
    assert number(value) == text


def test_summary_shows_a_small_best_value_in_full(capsys):
    summary = {"name": "r", "status": "finished", "run_dir": "d", "epochs": 1, "steps": 2, "seconds": 1.0,
               "device": "cpu", "precision": "fp32", "monitor": "val/mae", "best": {"value": 0.0001475, "epoch": 1},
               "final": {"val/mae": 0.0001475}, "checkpoints": {"best": None}}
    print_train_summary(summary, "3150 tokens/s")
    shown = capsys.readouterr().out
    assert "0.0001475 (epoch 1)" in shown and "0.0001 " not in shown
    assert "speed (last epoch)" in shown and "3150 tokens/s" in shown


def test_train_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        build_trainer(validate(tiny_digits_config(train={"epochs": 1, "device": "cpu", "threads": 2})))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_language_models_count_tokens_per_second():
    batch = Batch(torch.zeros(4, 16, dtype=torch.long), torch.zeros(4, 16, dtype=torch.long))
    assert LanguageModelTask.counted(batch) == 64 and ClassificationTask.counted(batch) == 4
    stream = io.StringIO()
    progress = Progress(2, quiet=True, stream=stream, unit="tokens")
    progress.epoch_start(1, 1)
    progress.advance(64)
    progress.log(1, {"train/loss": 1.5}, 0.1)
    progress.epoch_end(1, {"train/loss": 1.5}, 0.5)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("tokens/s") and "tokens/s)" in lines[1] and "samples" not in stream.getvalue()
    assert progress.last_speed.endswith(" tokens/s")  # the summary table's "speed (last epoch)" row


@pytest.mark.parametrize("names, rows, refused", [
    ([str(v) for v in range(10)], 100, False),  # digits
    ([str(v) for v in range(100)], 50_000, False),  # CIFAR-100 ids: many rows per class
    ([f"{v / 7:.3f}" for v in range(190)], 10_000, True),  # fractional: a measurement
    ([str(v) for v in range(25, 346)], 442, True),  # whole numbers, about one row each (diabetes)
    ([f"class{v}" for v in range(300)], 400, False),  # names, not numbers
])
def test_continuous_labels_rule(names, rows, refused):
    assert looks_continuous(names, rows) is refused


def test_a_continuous_label_column_is_refused_with_a_hint(tmp_path):
    rows = ["x,price"] + [f"{i % 7},{100 + i * 0.37:.2f}" for i in range(120)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    config = validate(tiny_digits_config(data={"dataset": {"name": "csv", "path": str(tmp_path / "t.csv"),
                                                           "label": "price"}, "val_split": 0.2}))
    with pytest.raises(DataError) as caught:
        build_trainer(config)
    assert "'price' holds 120 distinct numbers" in str(caught.value) and "(120 in all)" in str(caught.value)
    assert len(str(caught.value)) < 200 and "task: regression" in caught.value.hint


def test_long_lists_are_cut_to_a_few_names_and_a_count():
    assert listed(["a", "b"]) == "a, b"
    assert listed(range(190)) == "0, 1, 2, 3, 4, 5, 6, 7, ... (190 in all)"


def test_train_refuses_a_continuous_label_column_with_exit_3_and_writes_nothing(tmp_path, write_config):
    from typer.testing import CliRunner

    from dlcli.cli import app

    rows = ["x,age"] + [f"{i % 5},{20 + i * 0.5}" for i in range(60)]
    (tmp_path / "ages.csv").write_text("\n".join(rows) + "\n")
    config = write_config(tiny_digits_config(data={"dataset": {"name": "csv", "path": str(tmp_path / "ages.csv"),
                                                               "label": "age"}, "val_split": 0.2}))
    result = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: the label column 'age' holds 60 distinct numbers") and len(lines) == 2
    assert lines[1] == "hint: for a number, use task: regression with data.dataset.targets: [age]"
    assert not (tmp_path / "runs").exists()
