"""LanguageModelTask / TokenMetrics against hand computations: per-token loss weighted by the number
of tokens in each batch, token accuracy, perplexity = exp(loss); and the carried TBPTT state."""

import math

import pytest
import torch
import torch.nn.functional as F

from dlcli.components.losses import LOSSES
from dlcli.data.loading import Batch
from dlcli.tasks.language_model import LanguageModelTask, TokenMetrics

CPU = torch.device("cpu")


def one_hot_logits(pred: list[list[int]], vocab: int = 5) -> torch.Tensor:
    """[B, T, vocab] logits whose argmax is `pred`."""
    return F.one_hot(torch.tensor(pred), vocab).float() * 3.0


def test_token_metrics_weight_each_batch_by_its_tokens_not_by_batches():
    metrics = TokenMetrics(CPU)
    # batch 1: 2 sequences x 3 tokens = 6 tokens, mean loss 1.0, 4 of 6 predicted right
    y1 = torch.tensor([[1, 2, 3], [4, 2, 1]])
    p1 = [[1, 2, 0], [4, 0, 1]]
    metrics.update(torch.tensor(1.0), one_hot_logits(p1), Batch(None, y1))
    # batch 2: 1 sequence x 2 tokens = 2 tokens, mean loss 3.0, both right
    y2 = torch.tensor([[3, 3]])
    metrics.update(torch.tensor(3.0), one_hot_logits([[3, 3]]), Batch(None, y2))
    out = metrics.compute("val")

    loss = (6 * 1.0 + 2 * 3.0) / 8  # 1.5 -- the unweighted mean over batches would be 2.0
    assert set(out) == {"val/loss", "val/acc", "val/perplexity"}
    assert metrics.count == 8
    assert out["val/loss"] == pytest.approx(loss)
    assert out["val/acc"] == pytest.approx((4 + 2) / 8)
    assert out["val/perplexity"] == pytest.approx(math.exp(loss))


def test_token_metrics_against_real_cross_entropy_on_random_logits():
    """Accumulated over uneven batches, loss and perplexity equal the cross-entropy over all tokens."""
    g = torch.Generator().manual_seed(0)
    vocab, loss_fn = 11, LOSSES.build({"name": "cross_entropy"})
    all_logits, all_targets = [], []
    metrics = TokenMetrics(CPU)
    for batch_size, steps in [(3, 7), (5, 7), (1, 7), (2, 4)]:
        logits = torch.randn(batch_size, steps, vocab, generator=g)
        target = torch.randint(0, vocab, (batch_size, steps), generator=g)
        loss = loss_fn(logits.flatten(0, 1), target.flatten(), None)
        metrics.update(loss, logits, Batch(None, target))
        all_logits.append(logits.flatten(0, 1))
        all_targets.append(target.flatten())
    logits, target = torch.cat(all_logits), torch.cat(all_targets)
    expected = float(F.cross_entropy(logits, target))
    out = metrics.compute("train")
    assert out["train/loss"] == pytest.approx(expected, rel=1e-5)
    assert out["train/perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    assert out["train/acc"] == pytest.approx(float((logits.argmax(1) == target).float().mean()))


def test_perplexity_stays_finite_for_a_huge_loss_and_empty_metrics_report_nothing():
    metrics = TokenMetrics(CPU)
    assert metrics.compute("val") == {}
    metrics.update(torch.tensor(1e4), one_hot_logits([[0]]), Batch(None, torch.tensor([[1]])))
    out = metrics.compute("val")
    assert out["val/loss"] == pytest.approx(1e4)
    assert math.isfinite(out["val/perplexity"]) and out["val/perplexity"] > 1e300
    assert out["val/acc"] == 0.0


def test_token_metrics_state_round_trip_continues_the_sums():
    a = TokenMetrics(CPU)
    a.update(torch.tensor(2.0), one_hot_logits([[1, 2]]), Batch(None, torch.tensor([[1, 0]])))
    b = TokenMetrics(CPU)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.update(torch.tensor(0.5), one_hot_logits([[3, 3, 3, 3]]), Batch(None, torch.tensor([[3, 3, 3, 0]])))
    assert b.compute("train") == a.compute("train")
    assert b.compute("train")["train/loss"] == pytest.approx((2 * 2.0 + 4 * 0.5) / 6)
    assert b.compute("train")["train/acc"] == pytest.approx(4 / 6)


class Recorder(torch.nn.Module):
    """Stands in for a recurrent LM: returns fixed logits and a new state, records the state it got."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.seen, self.calls = vocab, [], 0
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, state=None, keep_state=False):
        self.calls += 1
        self.seen.append(state)
        logits = torch.zeros(*x.shape, self.vocab) + self.weight
        new_state = (torch.full((1, x.shape[0], 2), float(self.calls), requires_grad=True),
                     torch.zeros(1, x.shape[0], 2))
        return (logits, new_state) if keep_state else logits


def test_tbptt_carries_a_detached_state_until_reset_and_saves_it():
    model = Recorder(vocab=4)
    task = LanguageModelTask(LOSSES.build({"name": "cross_entropy"}), 4, tbptt=True)
    batch = Batch(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    loss, logits = task.loss(model, batch)
    assert loss.item() == pytest.approx(math.log(4))  # uniform logits over 4 tokens
    assert logits.shape == (2, 3, 4)
    task.loss(model, batch)
    assert model.seen[0] is None
    assert float(model.seen[1][0][0, 0, 0]) == 1.0  # the first call's final state came back in
    assert not model.seen[1][0].requires_grad  # ... detached: gradients stop at the window boundary
    saved = task.state_dict()
    assert float(saved["state"][0][0, 0, 0]) == 2.0

    fresh = LanguageModelTask(LOSSES.build({"name": "cross_entropy"}), 4, tbptt=True)
    fresh.load_state_dict(saved)
    fresh.loss(model, batch)
    assert float(model.seen[2][0][0, 0, 0]) == 2.0  # a resumed task continues the streams
    task.reset()
    task.loss(model, batch)
    assert model.seen[3] is None  # a new epoch / evaluation starts from a zero state


def test_without_tbptt_no_state_is_passed_or_kept():
    model = Recorder(vocab=3)
    task = LanguageModelTask(LOSSES.build({"name": "cross_entropy"}), 3, tbptt=False)
    batch = Batch(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    task.loss(model, batch)
    task.loss(model, batch)
    assert model.seen == [None, None]
    assert task.state_dict() == {"state": None}
