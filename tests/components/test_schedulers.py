"""Every registered LR schedule: builds, and its learning rate follows what its docstring says."""

import math

import pytest
import torch

from dlcli.components.optim.schedulers import SCHEDULERS
from dlcli.errors import ConfigError
from dlcli.tasks.classify import ClassificationTask

LR = 0.1
SPE = 4  # optimizer steps per epoch


def make(name: str, epochs: int = 10, steps_per_epoch: int = SPE, optimizer: str = "sgd", **params):
    param = torch.nn.Parameter(torch.zeros(3))
    if optimizer == "sgd":
        opt = torch.optim.SGD([param], lr=LR, momentum=0.9)
    else:
        opt = torch.optim.Adam([param], lr=LR)
    spec = ClassificationTask.resolve_mode(SCHEDULERS.validate({"name": name, **params}, "scheduler"))
    return opt, SCHEDULERS.build(spec, opt, steps_per_epoch, epochs)


def lrs_per_step(opt, schedule, epochs: int, steps_per_epoch: int = SPE, metrics=None) -> list[list[float]]:
    """The LR each optimizer step used, grouped by epoch, driven like the engine drives it."""
    out = []
    for epoch in range(epochs):
        row = []
        for _ in range(steps_per_epoch):
            row.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.after_optimizer_step()
        out.append(row)
        schedule.after_epoch(metrics(epoch) if metrics else {})
    return out


@pytest.mark.parametrize("name", SCHEDULERS.names())
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_schedule_builds_and_runs_a_whole_training(name, optimizer):
    epochs = 5
    opt, schedule = make(name, epochs, optimizer=optimizer)
    lrs = lrs_per_step(opt, schedule, epochs, metrics=lambda e: {"val/loss": 1.0})
    flat = [lr for row in lrs for lr in row]
    assert len(flat) == epochs * SPE
    assert all(math.isfinite(lr) and 0 <= lr <= LR * 1.0001 for lr in flat), flat
    # state round-trips into a fresh schedule
    state = schedule.state_dict()
    opt2, schedule2 = make(name, epochs, optimizer=optimizer)
    schedule2.load_state_dict(state)
    assert schedule2.state_dict().keys() == state.keys()


def test_constant_keeps_the_lr():
    opt, schedule = make("constant")
    lrs = lrs_per_step(opt, schedule, 3)
    assert all(lr == pytest.approx(LR) for row in lrs for lr in row)


def test_warmup_ramps_linearly_then_holds():
    opt, schedule = make("constant", warmup_epochs=2)  # 8 warm-up steps
    flat = [lr for row in lrs_per_step(opt, schedule, 4) for lr in row]
    assert flat[:8] == pytest.approx([LR * (s + 1) / 8 for s in range(8)])
    assert flat[8:] == pytest.approx([LR] * 8)
    steps = [b - a for a, b in zip(flat[:8], flat[1:8])]
    assert steps == pytest.approx([LR / 8] * 7)  # linear: equal increments


def test_fractional_warmup_epochs():
    opt, schedule = make("constant", warmup_epochs=0.5)  # 2 steps
    flat = [lr for row in lrs_per_step(opt, schedule, 1) for lr in row]
    assert flat == pytest.approx([LR / 2, LR, LR, LR])


def test_step_decays_every_step_size_epochs():
    opt, schedule = make("step", epochs=7, step_size=2, gamma=0.5)
    lrs = lrs_per_step(opt, schedule, 7)
    for epoch, row in enumerate(lrs):
        assert row == pytest.approx([LR * 0.5 ** (epoch // 2)] * SPE), epoch


def test_step_with_warmup_counts_epochs_after_warmup():
    opt, schedule = make("step", epochs=4, step_size=1, gamma=0.5, warmup_epochs=1)
    lrs = lrs_per_step(opt, schedule, 4)
    assert lrs[0] == pytest.approx([LR * (s + 1) / SPE for s in range(SPE)])
    assert lrs[1] == pytest.approx([LR] * SPE)
    assert lrs[2] == pytest.approx([LR / 2] * SPE)
    assert lrs[3] == pytest.approx([LR / 4] * SPE)


def test_multistep_decays_at_milestones():
    opt, schedule = make("multistep", epochs=7, milestones=[2, 5], gamma=0.1)
    lrs = lrs_per_step(opt, schedule, 7)
    expected = [LR, LR, LR * 0.1, LR * 0.1, LR * 0.1, LR * 0.01, LR * 0.01]
    for epoch, row in enumerate(lrs):
        assert row == pytest.approx([expected[epoch]] * SPE), epoch


def test_multistep_matches_torch_multisteplr_per_epoch():
    param = torch.nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([param], lr=LR)
    ref = torch.optim.lr_scheduler.MultiStepLR(ref_opt, milestones=[3, 4], gamma=0.3)
    expected = []
    for _ in range(6):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    opt, schedule = make("multistep", epochs=6, milestones=[3, 4], gamma=0.3)
    assert [row[0] for row in lrs_per_step(opt, schedule, 6)] == pytest.approx(expected)


def test_exponential_decays_once_per_epoch():
    opt, schedule = make("exponential", epochs=5, gamma=0.8)
    lrs = lrs_per_step(opt, schedule, 5)
    for epoch, row in enumerate(lrs):
        assert row == pytest.approx([LR * 0.8 ** epoch] * SPE), epoch


@pytest.mark.parametrize("min_lr_ratio", [0.0, 0.1])
def test_cosine_reaches_min_at_the_end(min_lr_ratio):
    epochs = 5
    opt, schedule = make("cosine", epochs=epochs, min_lr_ratio=min_lr_ratio)
    flat = [lr for row in lrs_per_step(opt, schedule, epochs) for lr in row]
    total = epochs * SPE
    assert flat[0] == pytest.approx(LR)
    expected = [LR * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * s / total)))
                for s in range(total)]
    assert flat == pytest.approx(expected)
    assert all(a >= b for a, b in zip(flat, flat[1:]))  # monotone decay
    assert flat[total // 2] == pytest.approx(LR * (1 + min_lr_ratio) / 2)  # half-way point
    assert opt.param_groups[0]["lr"] == pytest.approx(LR * min_lr_ratio, abs=1e-12)  # after the last step


def test_cosine_with_warmup():
    epochs = 6
    opt, schedule = make("cosine", epochs=epochs, warmup_epochs=1)
    flat = [lr for row in lrs_per_step(opt, schedule, epochs) for lr in row]
    assert flat[:SPE] == pytest.approx([LR * (s + 1) / SPE for s in range(SPE)])
    assert flat[SPE] == pytest.approx(LR)
    assert max(flat) == pytest.approx(LR)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("factor", [1.0, 3.0])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_onecycle_peaks_at_lr_times_max_lr_factor(factor, optimizer):
    epochs = 5
    opt, schedule = make("onecycle", epochs=epochs, optimizer=optimizer, max_lr_factor=factor, pct_start=0.25)
    flat = [lr for row in lrs_per_step(opt, schedule, epochs) for lr in row]
    peak = LR * factor
    assert max(flat) == pytest.approx(peak)
    assert flat.index(max(flat)) == round(0.25 * epochs * SPE) - 1  # torch's OneCycle peak step
    assert flat[0] == pytest.approx(peak / 25)  # div_factor
    assert flat[-1] < peak / 25  # annealed below the start
    assert all(a <= b for a, b in zip(flat[:5], flat[1:5]))  # rising, then
    assert all(a >= b for a, b in zip(flat[4:], flat[5:]))  # falling


def test_onecycle_runs_exactly_the_total_steps():
    opt, schedule = make("onecycle", epochs=2)
    lrs_per_step(opt, schedule, 2)  # stepping all 8 steps must not overrun OneCycleLR
    assert schedule.per_step.last_epoch == 2 * SPE


def test_reduce_on_plateau_reduces_after_patience():
    opt, schedule = make("reduce_on_plateau", patience=2, factor=0.5)
    seen = []
    for epoch in range(7):
        opt.step()
        schedule.after_optimizer_step()  # no per-step schedule: the LR stays
        schedule.after_epoch({"val/loss": 1.0})  # never improves after the first epoch
        seen.append(opt.param_groups[0]["lr"])
    # epoch 0 sets the best; epochs 1, 2 are the tolerated bad epochs; epoch 3 reduces
    assert seen[:3] == pytest.approx([LR] * 3)
    assert seen[3] == pytest.approx(LR * 0.5)
    assert seen[6] == pytest.approx(LR * 0.25)  # and again after another patience + 1 bad epochs


def test_reduce_on_plateau_keeps_lr_while_improving_and_respects_min_lr():
    opt, schedule = make("reduce_on_plateau", patience=0, factor=0.1, min_lr=0.005)
    for value in [5.0, 4.0, 3.0, 2.0]:
        schedule.after_epoch({"val/loss": value})
    assert opt.param_groups[0]["lr"] == pytest.approx(LR)
    for _ in range(5):
        schedule.after_epoch({"val/loss": 9.0})
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)


def test_reduce_on_plateau_mode_max_and_monitor():
    opt, schedule = make("reduce_on_plateau", patience=0, factor=0.5, mode="max", monitor="val/acc")
    schedule.after_epoch({"val/acc": 0.5, "val/loss": 1.0})
    schedule.after_epoch({"val/acc": 0.6, "val/loss": 9.0})  # acc improved; loss is not watched
    assert opt.param_groups[0]["lr"] == pytest.approx(LR)
    schedule.after_epoch({"val/acc": 0.55, "val/loss": 0.1})
    assert opt.param_groups[0]["lr"] == pytest.approx(LR * 0.5)
    schedule.after_epoch({"train/loss": 1.0})  # monitor absent: nothing happens
    assert opt.param_groups[0]["lr"] == pytest.approx(LR * 0.5)


def test_warmup_then_plateau():
    opt, schedule = make("reduce_on_plateau", patience=1, factor=0.5, warmup_epochs=1)
    lrs = lrs_per_step(opt, schedule, 5, metrics=lambda e: {"val/loss": 1.0})
    assert lrs[0] == pytest.approx([LR * (s + 1) / SPE for s in range(SPE)])  # linear warm-up
    assert lrs[1] == pytest.approx([LR] * SPE)  # warm-up done; epoch 0 set the best, epoch 1 bad #1
    assert lrs[2] == pytest.approx([LR] * SPE)  # epoch 1 was within patience
    assert lrs[3] == pytest.approx([LR * 0.5] * SPE)  # reduced after epoch 2; warm-up does not undo it
    assert lrs[4] == pytest.approx([LR * 0.5] * SPE)


def test_schedule_state_dict_resumes_the_lr():
    opt, schedule = make("cosine", epochs=4)
    lrs_per_step(opt, schedule, 2)
    state = schedule.state_dict()
    lr_now = opt.param_groups[0]["lr"]
    opt2, schedule2 = make("cosine", epochs=4)
    schedule2.load_state_dict(state)
    opt2.step()
    schedule2.after_optimizer_step()
    opt.step()
    schedule.after_optimizer_step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] < lr_now


@pytest.mark.parametrize("spec,key", [
    ({"name": "step", "step_size": 0}, "scheduler.step_size"),
    ({"name": "cosine", "min_lr_ratio": 2}, "scheduler.min_lr_ratio"),
    ({"name": "multistep", "milestones": [0]}, "scheduler.milestones.0"),
    ({"name": "reduce_on_plateau", "mode": "up"}, "scheduler.mode"),
    ({"name": "onecycle", "warmup_epochs": 1}, "scheduler.warmup_epochs"),  # onecycle has its own warm-up
    ({"name": "cosin"}, "scheduler.name"),
])
def test_invalid_schedule_specs(spec, key):
    with pytest.raises(ConfigError) as info:
        SCHEDULERS.validate(spec, "scheduler")
    assert info.value.problems[0].startswith(f"{key}:"), info.value.problems
