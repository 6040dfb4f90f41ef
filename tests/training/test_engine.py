"""The training engine in-process: repeatability, clipping, accumulation, early stopping, L1,
label smoothing, mixed precision on CPU, non-finite losses."""

import copy
import io
import math

import pytest
import torch

import dlcli.training.build
from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.errors import ConfigError, TrainingError
from dlcli.training import checkpoint
from dlcli.training.build import build_trainer
from dlcli.training.engine import evaluate, l1_penalty
from dlcli.training.session import train
from tests.conftest import tiny_digits_config

N_TRAIN_POOL = 1437  # digits: 1,797 images, 20% held out as the fixed test split


def make(overrides=(), **sections):
    config = validate(tiny_digits_config(**sections), list(overrides))
    trainer, meta = build_trainer(config)
    return trainer


def quiet(epochs=1):
    return Progress(epochs, quiet=True, stream=io.StringIO())


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_steps(trainer, n=None):
    """Call train_step batch by batch (stepping every batch); yields (before, after) parameter snapshots."""
    trainer.model.train()
    metrics = trainer.task.metrics(trainer.device)
    for i, batch in enumerate(trainer.train_batches):
        if n is not None and i >= n:
            return
        before = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.train_step(batch, 1, True, metrics)
        yield before, [p.detach().clone() for p in trainer.model.parameters()]


# ---------------------------------------------------------------- repeatability


def test_same_seed_gives_identical_weights():
    sections = dict(model={"name": "mlp", "hidden": [32], "dropout": 0.2})  # dropout and shuffle use the RNG
    runs = []
    for _ in range(2):
        trainer = make(**sections)
        trainer.train_epoch(quiet())
        runs.append(weights(trainer.model))
    assert runs[0].keys() == runs[1].keys()
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_different_seed_gives_different_weights():
    a, b = make(), make(["seed=1"])
    a.train_epoch(quiet())
    b.train_epoch(quiet())
    assert not torch.equal(a.model[1].weight, b.model[1].weight)


# ---------------------------------------------------------------- gradient clipping


def test_clip_by_value_bounds_every_weight_change():
    clip = 0.002
    trainer = make(optimizer={"name": "sgd", "lr": 1.0}, train={"device": "cpu", "grad_clip": {"max_value": clip}})
    changes = [max((a - b).abs().max().item() for a, b in zip(after, before))
               for before, after in run_steps(trainer, 8)]
    assert max(changes) <= clip * (1 + 1e-5)
    assert max(changes) == pytest.approx(clip, rel=1e-3)  # and the clip was actually hit


def test_clip_by_norm_bounds_the_update_norm():
    max_norm = 0.05
    trainer = make(optimizer={"name": "sgd", "lr": 1.0}, train={"device": "cpu", "grad_clip": {"max_norm": max_norm}})
    norms = [torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before))).item()
             for before, after in run_steps(trainer, 8)]
    assert max(norms) <= max_norm * (1 + 1e-4)
    assert max(norms) == pytest.approx(max_norm, rel=1e-3)


def test_without_clipping_the_same_steps_are_larger():
    trainer = make(optimizer={"name": "sgd", "lr": 1.0})
    changes = [max((a - b).abs().max().item() for a, b in zip(after, before))
               for before, after in run_steps(trainer, 3)]
    assert max(changes) > 0.01  # so the clipping tests above are not vacuous


# ---------------------------------------------------------------- gradient accumulation


def accumulation_config(batch_size, accumulate, rows=1280):
    config = tiny_digits_config(
        model={"name": "mlp", "hidden": [32]},  # no dropout, no batch norm
        optimizer={"name": "sgd", "lr": 0.2},
        train={"epochs": 1, "device": "cpu", "accumulate": accumulate, "log_interval": 1},
    )
    config["data"].update(val_split=(N_TRAIN_POOL - rows) / N_TRAIN_POOL, shuffle=False, batch_size=batch_size)
    return validate(config)


@pytest.mark.parametrize("rows", [1280, 1312, 1328], ids=["full-groups", "short-last-group", "short-last-batch"])
def test_accumulating_two_batches_of_32_equals_one_batch_of_64(rows):
    """1,312 rows end in a group of one batch of 32; 1,328 in a group of 32 + 16 rows, where each
    micro-batch must weigh by its rows (16/48), not by its count (1/2), to match one batch of 48."""
    big, _ = build_trainer(accumulation_config(64, 1, rows))
    small, _ = build_trainer(accumulation_config(32, 2, rows))
    assert len(big.train_batches.y) == rows
    for key, value in big.model.state_dict().items():  # same seed, same start
        assert torch.equal(value, small.model.state_dict()[key])
    big.train_epoch(quiet())
    small.train_epoch(quiet())
    assert big.state.step == small.state.step == math.ceil(rows / 64)
    for key, value in big.model.state_dict().items():
        assert torch.allclose(value, small.model.state_dict()[key], atol=1e-5, rtol=1e-4), key
    assert not torch.equal(big.model[1].weight, make().model[1].weight)  # it did train


def test_accumulation_steps_the_schedule_once_per_optimizer_step():
    trainer = make(["train.accumulate=3", "train.epochs=2"], scheduler={"name": "onecycle"})
    batches = len(trainer.train_batches)
    for epoch in (1, 2):
        trainer.state.epoch = epoch
        trainer.train_epoch(quiet(2))  # onecycle raises if stepped past its total
    assert trainer.state.step == 2 * math.ceil(batches / 3)
    assert trainer.schedule.per_step.last_epoch == trainer.state.step


# ---------------------------------------------------------------- early stopping, end to end


def test_early_stopping_stops_after_patience_and_restores_best(tmp_path, monkeypatch):
    captured = {}

    def capture(config, device=None):
        captured["trainer"], meta = build_trainer(config, device)
        return captured["trainer"], meta

    monkeypatch.setattr(dlcli.training.build, "build_trainer", capture)
    # "max" on a falling loss: epoch 1 is the best and nothing after it improves
    config = validate(tiny_digits_config(
        train={"epochs": 10, "device": "cpu", "monitor": "val/loss", "mode": "max"},
        callbacks=[{"name": "early_stopping", "monitor": "val/loss", "mode": "max", "patience": 2}],
    ))
    summary = train(config, str(tmp_path / "runs"), None, quiet(10))
    trainer = captured["trainer"]
    stopper = trainer.callbacks[0]
    assert summary["status"] == "finished"
    assert stopper.best_epoch == summary["best"]["epoch"]
    assert summary["epochs"] == stopper.best_epoch + 2 < 10
    best = checkpoint.load(summary["checkpoints"]["best"])["model"]
    last = checkpoint.load(summary["checkpoints"]["last"])["model"]
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], best[k]) for k in best)
    assert not all(torch.equal(final[k], last[k]) for k in last)
    saved = checkpoint.load(summary["checkpoints"]["final"])["model"]  # the restore is written out
    assert all(torch.equal(saved[k], best[k]) for k in best)


def test_train_without_early_stopping_runs_all_epochs(tmp_path):
    summary = train(validate(tiny_digits_config()), str(tmp_path / "runs"), "v9", quiet(2))
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert summary["final"]["val/acc"] > 0.5
    assert (tmp_path / "runs" / "tiny" / "v9" / "metrics.jsonl").read_text().count('"event": "epoch"') == 2


def test_top5_monitor_on_a_dataset_with_few_classes_fails_before_training(tmp_path):
    # top5 exists only with more than 5 classes; build_trainer knows the class count, and everything
    # `dlcli train` can reject must be rejected there, before a run directory is written
    rows = "\n".join(f"{i % 3},{(i * 7) % 5},{'abc'[i % 3]}" for i in range(30))
    (tmp_path / "three.csv").write_text("f1,f2,label\n" + rows + "\n")
    config = validate({"name": "three", "data": {"dataset": {"name": "csv", "path": str(tmp_path / "three.csv")}},
                       "model": {"name": "mlp", "hidden": [4]},
                       "train": {"epochs": 1, "device": "cpu", "monitor": "val/top5"}})
    with pytest.raises(ConfigError, match="val/top5"):
        build_trainer(config)


# ---------------------------------------------------------------- L1, label smoothing


def l1_norm(model):
    return sum(p.abs().sum().item() for p in model.parameters() if p.ndim > 1)


def test_l1_shrinks_weights():
    plain = make(["train.l1=0"])
    sparse = make(["train.l1=0.001"])
    assert l1_norm(plain.model) == pytest.approx(l1_norm(sparse.model))
    for trainer in (plain, sparse):
        trainer.train_epoch(quiet())
        trainer.train_epoch(quiet())
    assert l1_norm(sparse.model) < 0.9 * l1_norm(plain.model)


def test_l1_penalty_covers_weight_matrices_only():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    assert l1_penalty(model, 0.01).item() == pytest.approx(0.01 * model[0].weight.abs().sum().item(), rel=1e-6)


def test_l1_joins_what_is_minimised_but_not_the_reported_loss():
    """The step moves each weight matrix by an extra lr x l1 x sign(w); train/loss (like val/loss and
    perplexity) stays the data loss, comparable across l1 strengths."""
    lr, strength = 0.1, 0.01
    plain = make(["train.l1=0"], optimizer={"name": "sgd", "lr": lr})
    sparse = make([f"train.l1={strength}"], optimizer={"name": "sgd", "lr": lr})
    start = weights(plain.model)
    batch = next(iter(plain.train_batches))
    data_loss = plain.task.loss(plain.model, batch)[0].item()
    for trainer in (plain, sparse):
        trainer.model.train()
        metrics = trainer.task.metrics(trainer.device, full=False)
        trainer.train_step(batch, 1.0, True, metrics)
        assert metrics.compute("train")["train/loss"] == pytest.approx(data_loss, rel=1e-6)
    after_plain, after_sparse = weights(plain.model), weights(sparse.model)
    for key, w0 in start.items():
        extra = after_sparse[key] - after_plain[key]
        expected = -lr * strength * torch.sign(w0) if w0.ndim > 1 else torch.zeros_like(w0)
        assert torch.allclose(extra, expected, atol=1e-6), key


def test_label_smoothing_changes_the_loss():
    plain = make()
    smooth = make(loss={"name": "cross_entropy", "label_smoothing": 0.2})
    plain.train_epoch(quiet())
    batch = next(iter(plain.val_batches))
    loss0, _ = plain.task.loss(plain.model, batch)
    loss1, _ = smooth.task.loss(plain.model, batch)
    assert abs(loss1.item() - loss0.item()) > 1e-3
    assert loss1.item() > loss0.item()  # a model that fits the labels pays for the smoothed targets
    val0 = evaluate(plain.model, plain.task, plain.val_batches, plain.device, "fp32").compute("val")
    val1 = evaluate(plain.model, smooth.task, plain.val_batches, plain.device, "fp32").compute("val")
    assert val0["val/acc"] == val1["val/acc"] and val0["val/loss"] != val1["val/loss"]


# ---------------------------------------------------------------- precision on CPU


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_runs_on_cpu(precision):
    trainer = make(train={"device": "cpu", "precision": precision})
    assert trainer.precision == precision
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    before = weights(trainer.model)
    metrics = trainer.train_epoch(quiet())
    assert math.isfinite(metrics["train/loss"])
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(v.dtype == torch.float32 for v in trainer.model.state_dict().values())  # weights stay fp32
    val = evaluate(trainer.model, trainer.task, trainer.val_batches, trainer.device, precision).compute("val")
    assert math.isfinite(val["val/loss"]) and val["val/acc"] > 0.3


def test_auto_precision_is_fp32_on_cpu():
    assert make(train={"device": "cpu", "precision": "auto"}).precision == "fp32"


def test_fp16_skipped_steps_do_not_advance_the_schedule():
    trainer = make(train={"device": "cpu", "precision": "fp16"}, scheduler={"name": "cosine"})
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 60)  # every step overflows
    trainer.train_epoch(quiet())
    assert trainer.state.step == len(trainer.train_batches)
    assert trainer.schedule.per_step.last_epoch == 0
    assert trainer.lr == pytest.approx(0.01)


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_a_step_whose_batches_were_all_skipped_changes_no_weights_and_no_schedule(precision):
    """on_nan: skip_batch with no gradient left to apply: fp16's GradScaler would fail on an optimizer
    with no gradients, and fp32 would advance the LR schedule for a step never taken."""
    trainer = make(train={"device": "cpu", "precision": precision, "on_nan": "skip_batch", "accumulate": 2},
                   scheduler={"name": "cosine"})
    real_loss, calls = trainer.task.loss, []

    def loss(model, batch):  # the first two batches (the first optimizer step) are NaN
        value, logits = real_loss(model, batch)
        calls.append(1)
        return (value * float("nan") if len(calls) <= 2 else value), logits

    trainer.task.loss = loss
    metrics = trainer.task.metrics(trainer.device, full=False)
    batches = iter(trainer.train_batches)
    before = weights(trainer.model)
    trainer.train_step(next(batches), 0.5, False, metrics)
    assert trainer.train_step(next(batches), 0.5, True, metrics)  # the step ends, with nothing applied
    assert trainer.state.step == 1 and trainer.state.skipped_batches == 2
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert trainer.schedule.per_step.last_epoch == 0 and trainer.lr == pytest.approx(0.01)
    trainer.train_step(next(batches), 0.5, False, metrics)
    trainer.train_step(next(batches), 0.5, True, metrics)  # a good step after it trains as usual
    assert trainer.state.step == 2 and trainer.schedule.per_step.last_epoch == 1
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_a_skipped_batch_resets_the_tasks_carried_state():
    """A language model with train.tbptt carries its hidden state to the next batch; after a non-finite
    batch that state may be non-finite too, so the task starts its streams afresh (reset)."""
    trainer = make(train={"device": "cpu", "on_nan": "skip_batch"})
    real_loss, resets = trainer.task.loss, []
    trainer.task.loss = lambda model, batch: (real_loss(model, batch)[0] * float("nan"), None)
    trainer.task.reset = lambda: resets.append(1)
    trainer.train_step(next(iter(trainer.train_batches)), 1.0, True, trainer.task.metrics(trainer.device))
    assert trainer.state.skipped_batches == 1 and resets == [1]


# ---------------------------------------------------------------- epoch bookkeeping


def test_train_epoch_metrics_steps_and_learning():
    trainer = make(["optimizer.lr=0.01"])
    first = trainer.train_epoch(quiet())
    assert set(first) == {"train/loss", "train/acc"}
    assert trainer.state.step == len(trainer.train_batches)
    second = trainer.train_epoch(quiet())
    assert second["train/loss"] < first["train/loss"]
    assert second["train/acc"] > first["train/acc"]


def test_end_epoch_tracks_the_best_value():
    trainer = make()
    assert trainer.monitor == "val/loss" and trainer.mode == "min"
    trainer.state.epoch = 1
    assert trainer.end_epoch({"val/loss": 1.0})
    trainer.state.epoch = 2
    assert not trainer.end_epoch({"val/loss": 1.5})
    trainer.state.epoch = 3
    assert not trainer.end_epoch({"val/loss": float("nan")})
    assert (trainer.state.best, trainer.state.best_epoch) == (1.0, 1)


def test_end_epoch_requires_the_monitored_metric():
    trainer = make(["train.monitor=val/top5"])
    with pytest.raises(TrainingError, match="val/top5"):
        trainer.end_epoch({"val/loss": 1.0})


def test_non_finite_loss_is_a_training_error():
    trainer = make()
    trainer.train_batches.x[0] = float("nan")
    with pytest.raises(TrainingError, match="loss became nan"):
        trainer.train_epoch(quiet())


def test_log_interval_prints_running_loss():
    trainer = make(train={"device": "cpu", "log_interval": 5})
    stream = io.StringIO()
    trainer.train_epoch(Progress(1, quiet=True, stream=stream))
    lines = [line for line in stream.getvalue().splitlines() if "step" in line]
    assert len(lines) == len(trainer.train_batches) // 5
    assert all("loss" in line for line in lines)


def test_evaluate_does_not_change_the_model():
    trainer = make()
    before = copy.deepcopy(trainer.model.state_dict())
    evaluate(trainer.model, trainer.task, trainer.val_batches, trainer.device, "fp32")
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert not trainer.model.training
