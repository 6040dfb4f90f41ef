"""Early stopping: patience, min_delta, modes, best-weight restore, state round-trip."""

import math

import pytest
import torch

from dlcli.components.callbacks import CALLBACKS, EarlyStopping, improved
from dlcli.tasks.classify import ClassificationTask


def build(default_monitor="val/loss", **params):
    return CALLBACKS.build(CALLBACKS.validate({"name": "early_stopping", **params}, "callbacks.0"), default_monitor,
                           ClassificationTask.metric_mode)


def feed(callback, values, model=None, key=None):
    """on_epoch_end for epochs 1.. with the given values; returns the epoch it asked to stop at (or None)."""
    model = model or torch.nn.Linear(2, 2)
    for epoch, value in enumerate(values, start=1):
        callback.on_epoch_end(epoch, {key or callback.monitor: value}, model)
        if callback.should_stop:
            return epoch
    return None


def test_improved():
    assert improved(1.0, None, "min")
    assert not improved(float("nan"), None, "min")
    assert improved(0.9, 1.0, "min") and not improved(1.0, 1.0, "min")
    assert improved(1.1, 1.0, "max") and not improved(0.9, 1.0, "max")
    assert not improved(0.95, 1.0, "min", min_delta=0.1)
    assert improved(0.85, 1.0, "min", min_delta=0.1)
    assert not improved(float("nan"), 1.0, "min") and not improved(float("nan"), 1.0, "max")


@pytest.mark.parametrize("patience", [0, 1, 3])
def test_stops_after_patience_epochs_without_improvement(patience):
    cb = build(patience=patience)
    values = [1.0, 0.8] + [0.9] * 10
    stopped = feed(cb, values)
    assert stopped == 2 + max(patience, 1)  # patience 0: stop at the first epoch that does not improve
    assert cb.best == 0.8 and cb.best_epoch == 2


def test_improvement_resets_the_wait():
    cb = build(patience=2)
    assert feed(cb, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.85]) == 7
    assert cb.best_epoch == 5


def test_does_not_stop_while_improving():
    cb = build(patience=1)
    assert feed(cb, [5.0, 4.0, 3.0, 2.0, 1.0]) is None


def test_min_delta():
    cb = build(patience=2, min_delta=0.1)
    assert feed(cb, [1.0, 0.95, 0.92, 0.5]) == 3  # 0.95 and 0.92 are not better by 0.1


@pytest.mark.parametrize("metric,mode", [("val/loss", "min"), ("train/loss", "min"), ("val/acc", "max"),
                                         ("val/f1", "max"), ("val/top5", "max")])
def test_auto_mode_follows_the_metric(metric, mode):
    assert build(monitor=metric).mode == mode
    assert build(default_monitor=metric).mode == mode


def test_explicit_mode_wins():
    assert build(monitor="val/acc", mode="min").mode == "min"


def test_monitor_defaults_to_train_monitor():
    cb = build(default_monitor="val/acc")
    assert cb.monitor == "val/acc" and cb.mode == "max"
    assert feed(cb, [0.5, 0.6, 0.55, 0.58, 0.59, 0.6, 0.6]) == 7  # default patience 5


def test_nan_never_improves():
    cb = build(patience=2)
    assert feed(cb, [float("nan"), float("nan")]) == 2
    assert cb.best is None


def test_restores_best_weights_when_stopping():
    model = torch.nn.Linear(3, 2)
    cb = build(patience=1)
    snapshots = {}
    for epoch, value in enumerate([1.0, 0.5, 0.7], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        snapshots[epoch] = model.weight.detach().clone()
        cb.on_epoch_end(epoch, {"val/loss": value}, model)
    assert cb.should_stop
    note = cb.on_train_end(model)
    assert torch.equal(model.weight, snapshots[2])
    assert "epoch 2" in note


def test_best_weights_are_a_copy_not_a_reference():
    model = torch.nn.Linear(3, 2)
    cb = build(patience=1)
    cb.on_epoch_end(1, {"val/loss": 1.0}, model)
    best = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)  # in-place update, like an optimizer step
    cb.on_epoch_end(2, {"val/loss": 2.0}, model)
    cb.on_train_end(model)
    assert torch.equal(model.weight, best)


def test_no_restore_when_disabled_or_not_stopped():
    model = torch.nn.Linear(3, 2)
    cb = build(patience=1, restore_best=False)
    cb.on_epoch_end(1, {"val/loss": 1.0}, model)
    with torch.no_grad():
        model.weight.fill_(7.0)
    cb.on_epoch_end(2, {"val/loss": 2.0}, model)
    assert cb.should_stop and cb.on_train_end(model) is None
    assert torch.all(model.weight == 7.0)


def test_state_dict_round_trip():
    cb = build(patience=3)
    feed(cb, [1.0, 0.9, 1.2])
    other = build(patience=3)
    other.load_state_dict(cb.state_dict())
    assert (other.best, other.best_epoch, other.wait, other.should_stop) == (0.9, 2, 1, False)
    assert feed(other, [1.3, 1.4]) == 2  # two more bad epochs reach patience 3


def test_is_an_early_stopping_instance_with_config_values():
    cb = build(monitor="val/f1", patience=4, min_delta=0.01, restore_best=False)
    assert isinstance(cb, EarlyStopping)
    assert (cb.monitor, cb.mode, cb.patience, cb.min_delta, cb.restore_best) == ("val/f1", "max", 4, 0.01, False)
    assert math.isclose(cb.min_delta, 0.01)
