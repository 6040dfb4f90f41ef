"""ForecastTask / ForecastMetrics against hand computations: MAE and RMSE in the data's own units
(normalised errors times each target column's std), and the naive baseline that repeats the
window's last value of each target column."""

import math
from types import SimpleNamespace

import pytest
import torch

from dlcli.components.losses import LOSSES
from dlcli.data.loading import Batch
from dlcli.tasks.forecast import ForecastMetrics, ForecastTask

CPU = torch.device("cpu")


def test_mae_rmse_and_naive_mae_by_hand_in_data_units():
    # 3 input features; the targets are features 2 and 0 (in that order), with stds 10 and 2
    std = [10.0, 2.0]
    metrics = ForecastMetrics(std, [2, 0], CPU)
    # one window of 2 steps; last input row: feature0 = 0.5, feature2 = -1.0
    x = torch.tensor([[[9.0, 9.0, 9.0], [0.5, 7.0, -1.0]]])
    y = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # horizon 2 x targets (f2, f0), normalised
    out = torch.tensor([[[0.5, 1.0], [1.0, -1.0]]])
    metrics.update(torch.tensor(0.7), out, Batch(x, y))

    # errors in units: (out - y) * std per column: [[5, 0], [0, -2]]
    mae = (5 + 0 + 0 + 2) / 4
    rmse = math.sqrt((25 + 0 + 0 + 4) / 4)
    # naive: last input value of each target column (f2 = -1.0, f0 = 0.5) against every future step
    naive = (abs(-1.0 - 0.0) * 10 + abs(0.5 - 1.0) * 2 + abs(-1.0 - 1.0) * 10 + abs(0.5 - 0.0) * 2) / 4
    result = metrics.compute("val")
    assert result == pytest.approx({"val/loss": 0.7, "val/mae": mae, "val/rmse": rmse, "val/naive_mae": naive})
    assert metrics.count == 1 and metrics.values == 4


def test_metrics_accumulate_over_batches_against_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    std, target_index = [3.0, 0.5], [1, 2]
    metrics = ForecastMetrics(std, target_index, CPU)
    xs, ys, outs, losses = [], [], [], []
    for batch_size in (4, 7, 1):
        x = torch.randn(batch_size, 6, 3, generator=g)
        y = torch.randn(batch_size, 3, 2, generator=g)
        out = y + 0.3 * torch.randn(batch_size, 3, 2, generator=g)
        loss = torch.rand((), generator=g)
        metrics.update(loss, out, Batch(x, y))
        xs.append(x), ys.append(y), outs.append(out), losses.append((float(loss), batch_size))
    x, y, out = torch.cat(xs), torch.cat(ys), torch.cat(outs)
    scale = torch.tensor(std)
    err = (out - y) * scale
    naive = (x[:, -1:, target_index] - y) * scale
    result = metrics.compute("test")
    assert result["test/loss"] == pytest.approx(sum(v * n for v, n in losses) / 12)  # weighted by windows
    assert result["test/mae"] == pytest.approx(float(err.abs().mean()), rel=1e-5)
    assert result["test/rmse"] == pytest.approx(float(err.square().mean().sqrt()), rel=1e-5)
    assert result["test/naive_mae"] == pytest.approx(float(naive.abs().mean()), rel=1e-5)
    assert result["test/rmse"] >= result["test/mae"]


def test_training_reports_only_the_loss_and_empty_metrics_nothing():
    metrics = ForecastMetrics([1.0], [0], CPU)
    assert metrics.compute("val") == {}
    metrics.update(torch.tensor(0.25), torch.zeros(2, 1, 1), Batch(torch.zeros(2, 4, 1), torch.ones(2, 1, 1)))
    assert metrics.compute("train") == {"train/loss": pytest.approx(0.25)}


def test_state_round_trip_continues_the_sums():
    a = ForecastMetrics([2.0], [0], CPU)
    batch = Batch(torch.zeros(3, 4, 1), torch.ones(3, 2, 1))
    a.update(torch.tensor(1.0), torch.zeros(3, 2, 1), batch)
    b = ForecastMetrics([2.0], [0], CPU)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.update(torch.tensor(3.0), torch.full((3, 2, 1), 2.0), batch)
    assert b.compute("val") == a.compute("val")
    assert b.compute("val")["val/mae"] == pytest.approx(2.0)  # |0-1|*2 and |2-1|*2
    assert b.compute("val")["val/loss"] == pytest.approx(2.0)


def test_forecast_task_reshapes_outputs_uses_target_column_stats_and_denormalises():
    meta = SimpleNamespace(sequence={"target_index": [1]}, feature_mean=[100.0, 5.0], feature_std=[50.0, 4.0])
    task = ForecastTask(LOSSES.build({"name": "mse"}), meta)
    assert task.mean == [5.0] and task.std == [4.0]

    class Flat(torch.nn.Module):  # [B, horizon x targets], as a recurrent forecaster's head returns
        def forward(self, x):
            return torch.ones(x.shape[0], 3)

    batch = Batch(torch.zeros(2, 8, 2), torch.zeros(2, 3, 1))
    loss, out = task.loss(Flat(), batch)
    assert out.shape == (2, 3, 1)
    assert float(loss) == pytest.approx(1.0)
    assert task.denormalize(torch.tensor([[0.0], [1.0], [-0.5]])).flatten().tolist() == [5.0, 9.0, 3.0]
    metrics = task.metrics(CPU)
    metrics.update(loss, out, batch)
    assert metrics.compute("val")["val/mae"] == pytest.approx(4.0)  # error 1 (normalised) x std 4
