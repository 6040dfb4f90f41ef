"""ClassificationTask / ClassificationMetrics against scikit-learn on random logits."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score

from dlcli.data.loading import Batch
from dlcli.tasks.classify import ClassificationMetrics, ClassificationTask

CPU = torch.device("cpu")


def random_logits(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g), torch.randint(0, k, (n,), generator=g)


def accumulate(logits, target, k, batch_size=37, losses=None):
    metrics = ClassificationMetrics(k, CPU)
    for i, start in enumerate(range(0, len(target), batch_size)):
        sl = slice(start, start + batch_size)
        loss = torch.tensor(losses[i] if losses else 0.0)
        metrics.update(loss, logits[sl], Batch(None, target[sl]))
    return metrics


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [3, 10, 17])
def test_metrics_match_sklearn(k, seed):
    logits, target = random_logits(301, k, seed)
    # bias the logits towards the truth so accuracy and F1 are not trivial
    logits[torch.arange(301), target] += torch.rand(301, generator=torch.Generator().manual_seed(seed)) * 2
    out = accumulate(logits, target, k).compute("val")
    y, pred, scores = target.numpy(), logits.argmax(1).numpy(), logits.numpy()
    assert out["val/acc"] == pytest.approx(accuracy_score(y, pred), abs=1e-9)
    assert out["val/f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-6)
    if k > 5:
        assert out["val/top5"] == pytest.approx(top_k_accuracy_score(y, scores, k=5, labels=np.arange(k)), abs=1e-9)
    else:
        assert "val/top5" not in out


def test_macro_f1_with_classes_missing_from_targets_and_predictions():
    k = 8
    target = torch.tensor([0, 0, 1, 1, 2, 2, 3])  # classes 4..7 never occur
    pred = torch.tensor([0, 1, 1, 1, 2, 4, 3])  # class 4 predicted but absent from targets
    logits = torch.nn.functional.one_hot(pred, k).float()
    out = accumulate(logits, target, k, batch_size=3).compute("train")
    assert out["train/f1"] == pytest.approx(f1_score(target.numpy(), pred.numpy(), average="macro",
                                                     zero_division=0))
    assert out["train/acc"] == pytest.approx(5 / 7)


def test_confusion_matrix_matches_sklearn():
    logits, target = random_logits(200, 6, 7)
    cm = accumulate(logits, target, 6).confusion_matrix()
    expected = confusion_matrix(target.numpy(), logits.argmax(1).numpy(), labels=range(6))
    assert np.array_equal(cm.numpy(), expected)


def test_loss_is_a_sample_weighted_average_over_batches():
    logits, target = random_logits(100, 4, 1)
    metrics = ClassificationMetrics(4, CPU)
    metrics.update(torch.tensor(1.0), logits[:90], Batch(None, target[:90]))
    metrics.update(torch.tensor(2.0), logits[90:], Batch(None, target[90:]))
    assert metrics.compute("train")["train/loss"] == pytest.approx((90 * 1.0 + 10 * 2.0) / 100)


def test_empty_metrics_compute_to_nothing():
    assert ClassificationMetrics(3, CPU).compute("val") == {}


def test_top5_with_exactly_six_classes():
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1], [6.0, 5, 4, 3, 2, 1]])
    target = torch.tensor([4, 5])  # rank 5 (hit) and rank 6 (miss)
    out = accumulate(logits, target, 6).compute("val")
    assert out["val/top5"] == pytest.approx(0.5)


def test_metrics_accept_low_precision_logits():
    logits, target = random_logits(64, 10, 3)
    out = accumulate(logits.to(torch.bfloat16), target, 10).compute("val")
    assert 0 <= out["val/acc"] <= 1 and 0 <= out["val/top5"] <= 1


def test_task_passes_sample_weights_to_the_loss():
    seen = {}

    def loss_fn(logits, target, weights=None):
        seen["weights"] = weights
        return logits.sum() * 0

    w = torch.tensor([1.0, 0.0])
    ClassificationTask(loss_fn, 2).loss(torch.nn.Linear(2, 2), Batch(torch.zeros(2, 2), torch.tensor([0, 1]), w))
    assert seen["weights"] is w


def test_predict_gives_probabilities():
    logits, _ = random_logits(10, 5, 2)
    probs = ClassificationTask(None, 5).predict(logits.half())
    assert probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(10))
    assert torch.equal(probs.argmax(1), logits.argmax(1))


def test_training_metrics_track_loss_and_accuracy_only():
    logits, target = random_logits(200, 10, seed=7)
    full = accumulate(logits, target, 10, losses=[0.5] * 6).compute("train")
    light = ClassificationMetrics(10, CPU, full=False)
    for start in range(0, 200, 37):
        light.update(torch.tensor(0.5), logits[start:start + 37], Batch(None, target[start:start + 37]))
    out = light.compute("train")
    assert set(out) == {"train/loss", "train/acc"}
    assert out["train/acc"] == pytest.approx(accuracy_score(target.numpy(), logits.argmax(1).numpy()))
    assert out["train/loss"] == pytest.approx(full["train/loss"]) == pytest.approx(0.5)


def test_training_metrics_summed_on_read_equal_the_full_metrics():
    """Training (full=False) keeps each step's loss and logits and reduces them when read; the result,
    and a checkpoint taken mid-epoch, agree with the per-step sums of the full metrics."""
    logits, target = random_logits(200, 7, seed=3)
    losses = [0.5 + 0.1 * i for i in range(6)]
    full = accumulate(logits, target, 7, losses=losses).compute("train")
    running = ClassificationMetrics(7, CPU, full=False)
    for i, start in enumerate(range(0, 200, 37)):
        if i == 3:  # mid-epoch checkpoint and resume: the pending steps travel in the state
            restored = ClassificationMetrics(7, CPU, full=False)
            restored.load_state_dict(running.state_dict())
            assert len(restored.pending_loss) == 3 and not running.pending_hits
            running = restored
        sl = slice(start, start + 37)
        running.update(torch.tensor(losses[i]), logits[sl], Batch(None, target[sl]))
    assert len(running.pending_loss) == 6  # six steps, fewer than FOLD_EVERY: nothing reduced yet
    got = running.compute("train")
    assert got["train/loss"] == pytest.approx(full["train/loss"], rel=1e-6)
    assert got["train/acc"] == pytest.approx(full["train/acc"], abs=1e-12)


def test_training_metrics_hold_a_bounded_number_of_steps():
    from dlcli.tasks.classify import FOLD_EVERY

    logits, target = random_logits(8 * (FOLD_EVERY + 3), 5, seed=4)
    metrics = ClassificationMetrics(5, CPU, full=False)
    for start in range(0, len(target), 8):
        metrics.update(torch.tensor(1.0), logits[start:start + 8], Batch(None, target[start:start + 8]))
        assert len(metrics.pending_loss) < FOLD_EVERY and len(metrics.pending_hits) < FOLD_EVERY
    assert metrics.compute("train")["train/acc"] == pytest.approx(float((logits.argmax(1) == target).float().mean()))


def test_training_loss_is_the_same_float_however_often_it_is_read():
    """Losses fold at fixed steps, so reads (progress bar, log interval) and a mid-epoch checkpoint
    cannot regroup the float sum: the epoch's loss is bitwise the same."""
    from dlcli.tasks.classify import FOLD_EVERY

    g = torch.Generator().manual_seed(5)
    losses = (torch.rand(3 * FOLD_EVERY + 5, generator=g) * 1000).tolist()
    logits, target = random_logits(8, 4, seed=6)

    def epoch(read_at=(), checkpoint_at=None):
        metrics = ClassificationMetrics(4, CPU, full=False)
        for step, value in enumerate(losses):
            if step == checkpoint_at:
                resumed = ClassificationMetrics(4, CPU, full=False)
                resumed.load_state_dict(metrics.state_dict())
                metrics = resumed
            metrics.update(torch.tensor(value), logits, Batch(None, target))
            if step in read_at:
                metrics.compute("train")
        return metrics.compute("train")["train/loss"]

    quiet = epoch()
    assert epoch(read_at=range(0, len(losses), 7)) == quiet
    assert epoch(checkpoint_at=FOLD_EVERY + 7) == quiet
    assert epoch(read_at=(3, 20, 40), checkpoint_at=2 * FOLD_EVERY + 1) == quiet
