"""Loss registry. Each builder returns fn(outputs, target, weights) -> scalar loss.

Sample weights (from a dataset column and/or class weights) are applied here, as a weighted
mean, so a zero-weighted sample contributes nothing to the gradient. Losses that compare
against a one-hot target (bce, mse, l1, huber, soft_f1) see softmax/sigmoid outputs.
With float targets (forecasting), mse, l1 and huber compare the raw outputs with the targets.
"""

from typing import Literal

from dlcli.components.losses.registry import LOSSES
from dlcli.types import Fraction, PositiveFloat


def weighted_mean(per_sample, weights):
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)


def _onehot(logits, target):
    """Class ids as one-hot rows; 0/1 label rows (multilabel) as they are."""
    import torch.nn.functional as F

    if target.is_floating_point():
        return target.to(logits.dtype)
    return F.one_hot(target, logits.shape[1]).to(logits.dtype)


@LOSSES.register("cross_entropy")
def cross_entropy(*, label_smoothing: Fraction = 0.0):
    """Softmax cross-entropy on logits, with optional label smoothing."""
    import torch.nn.functional as F

    def loss(logits, target, weights=None):
        if weights is None:  # the mean inside torch's kernel: one launch fewer each way per step
            return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
        per = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
        return weighted_mean(per, weights)

    return loss


@LOSSES.register("nll")
def nll():
    """Negative log-likelihood of log_softmax(logits) (equals cross-entropy without smoothing)."""
    import torch.nn.functional as F

    def loss(logits, target, weights=None):
        return weighted_mean(F.nll_loss(F.log_softmax(logits, 1), target, reduction="none"), weights)

    return loss


@LOSSES.register("bce_with_logits")
def bce_with_logits(*, label_smoothing: Fraction = 0.0, pos_weight: list[PositiveFloat] | None = None):
    """Binary cross-entropy per class (or label) on logits, against the one-hot (or 0/1 label) target.

    `pos_weight`: one factor per class on its positive term (e.g. negatives/positives for rare labels)."""
    import torch
    import torch.nn.functional as F

    def loss(logits, target, weights=None):
        onehot = _onehot(logits, target) * (1 - label_smoothing) + label_smoothing / 2
        scale = None
        if pos_weight is not None:
            if len(pos_weight) != logits.shape[1]:
                raise ValueError(f"loss.pos_weight: {len(pos_weight)} values for {logits.shape[1]} outputs")
            scale = torch.tensor(pos_weight, device=logits.device, dtype=logits.dtype)
        per = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none", pos_weight=scale).mean(1)
        return weighted_mean(per, weights)

    return loss


@LOSSES.register("bce")
def bce():
    """Binary cross-entropy on sigmoid(logits) against the one-hot target."""
    import torch
    import torch.nn.functional as F

    def loss(logits, target, weights=None):
        probs = torch.sigmoid(logits.float()).clamp(1e-7, 1 - 1e-7)
        per = F.binary_cross_entropy(probs, _onehot(probs, target), reduction="none").mean(1)
        return weighted_mean(per, weights)

    return loss


def _regression_on_probs(kind: str, beta: float = 1.0):
    import torch.nn.functional as F

    fns = {"mse": F.mse_loss, "l1": F.l1_loss}

    def loss(logits, target, weights=None):
        if target.is_floating_point():  # regression: outputs against the target values
            pred, goal = logits.float(), target.float()
        else:
            pred = logits.float().softmax(1)
            goal = _onehot(pred, target)
        if kind == "huber":
            per = F.huber_loss(pred, goal, reduction="none", delta=beta)
        elif kind == "smooth_l1":
            per = F.smooth_l1_loss(pred, goal, reduction="none", beta=beta)
        else:
            per = fns[kind](pred, goal, reduction="none")
        return weighted_mean(per.flatten(1).mean(1), weights)

    return loss


@LOSSES.register("mse")
def mse():
    """Mean squared error: outputs vs values (regression, forecasting), or softmax vs one-hot target."""
    return _regression_on_probs("mse")


@LOSSES.register("l1")
def l1():
    """Mean absolute error: softmax probabilities vs one-hot target, or outputs vs values."""
    return _regression_on_probs("l1")


@LOSSES.register("huber")
def huber(*, delta: PositiveFloat = 1.0):
    """Huber loss: softmax probabilities vs one-hot target, or outputs vs values."""
    return _regression_on_probs("huber", delta)


@LOSSES.register("smooth_l1")
def smooth_l1(*, beta: PositiveFloat = 1.0):
    """Smooth L1: squared below `beta`, absolute above (Huber divided by beta); outputs vs values."""
    return _regression_on_probs("smooth_l1", beta)


@LOSSES.register("soft_f1")
def soft_f1(*, average: Literal["macro"] = "macro", eps: PositiveFloat = 1e-7):
    """1 - differentiable macro-F1 (true/false positives counted with probabilities)."""

    def loss(logits, target, weights=None):
        probs = logits.float().softmax(1)
        onehot = _onehot(probs, target)
        w = weights[:, None] if weights is not None else 1.0
        tp = (w * probs * onehot).sum(0)
        fp = (w * probs).sum(0) - tp
        fn = (w * onehot).sum(0) - tp
        f1 = 2 * tp / (2 * tp + fp + fn + eps)
        return 1 - f1.mean()

    return loss
