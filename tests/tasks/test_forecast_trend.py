"""Forecasting a trending, seasonal series: differencing and its undoing (data/differencing.py), the
default (`difference: 1`) beating the naive and seasonal naive forecasts in the data's units, the
seasonal naive metric, and several series in one CSV (an `id` column) whose windows never cross."""

import io
import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.data.differencing import differenced, integrated, lag_polynomial
from dlcli.data.pipeline import describe, train_val_sources
from dlcli.data.windows import prepare
from dlcli.errors import DataError
from dlcli.inference.evaluate import evaluate_checkpoint
from dlcli.tasks.forecast import ForecastTask
from dlcli.training.session import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEASON, WINDOW, HORIZON = 12, 24, 3


def trend(t: int, rng: random.Random) -> float:
    return 0.05 * t + 2.0 * math.sin(2 * math.pi * t / SEASON) + rng.gauss(0, 0.3)


def write_csv(path, columns: dict):
    rows = [",".join(columns)] + [",".join(map(str, row)) for row in zip(*columns.values())]
    path.write_text("\n".join(rows) + "\n")
    return path


def forecaster(dataset: dict, epochs: int = 8) -> dict:
    return {"name": "fc", "seed": 0, "task": "forecasting",
            "data": {"dataset": dataset, "val_split": 0.2, "batch_size": 32},
            "model": {"name": "lstm", "embedding_dim": 8, "hidden_size": 32},
            "optimizer": {"name": "adam", "lr": 0.003},
            "train": {"epochs": epochs, "device": "cpu", "grad_clip": {"max_norm": 1.0}, "monitor": "val/mae"}}


def fit(config: dict, root) -> dict:
    cfg = validate(config)
    return train(cfg, str(root), None, Progress(cfg.train.epochs, quiet=True, stream=io.StringIO()))


@pytest.fixture(scope="module")
def trending(tmp_path_factory):
    """A trend + season + noise series (the test file continues it in time), trained with the default
    differencing and with a seasonal difference too."""
    folder = tmp_path_factory.mktemp("trend")
    rng = random.Random(0)
    train_csv = write_csv(folder / "train.csv", {"value": [round(trend(t, rng), 5) for t in range(480)]})
    test_csv = write_csv(folder / "test.csv", {"value": [round(trend(t, rng), 5) for t in range(480, 600)]})
    dataset = {"name": "timeseries", "path": str(train_csv), "test_path": str(test_csv),
               "window": WINDOW, "horizon": HORIZON}
    plain = fit(forecaster(dataset), folder / "runs")
    seasonal = fit(forecaster({**dataset, "seasonal_difference": SEASON}), folder / "runs")
    return SimpleNamespace(folder=folder, train=train_csv, test=test_csv, plain=plain, seasonal=seasonal)


def seasonal_naive_by_hand(values: list[float]) -> float:
    errors = [abs(values[s + WINDOW - 1 + h - SEASON] - values[s + WINDOW - 1 + h])
              for s in range(len(values) - WINDOW - HORIZON + 1) for h in range(1, HORIZON + 1)]
    return sum(errors) / len(errors)


def column(path) -> list[float]:
    return [float(v) for v in path.read_text().split()[1:]]


def test_lag_polynomials():
    assert lag_polynomial(0, 0) == [1.0]
    assert lag_polynomial(1, 0) == [1.0, -1.0]
    assert lag_polynomial(0, 3) == [1.0, 0.0, 0.0, -1.0]
    assert lag_polynomial(1, 3) == [1.0, -1.0, 0.0, -1.0, 1.0]  # z_t - z_{t-1} - z_{t-3} + z_{t-4}


@pytest.mark.parametrize("difference, season", [(0, 0), (1, 0), (0, 4), (1, 4)])
def test_integrating_the_differences_gives_the_levels_back(difference, season):
    p = lag_polynomial(difference, season)
    z = torch.randn(3, 20, 2, generator=torch.Generator().manual_seed(0)).cumsum(1)
    past, future = z[:, :15], z[:, 15:]
    w = differenced(z, p)[:, -5:]  # the differences of the future rows
    assert torch.allclose(integrated(w, past, p), future, atol=1e-5)


def test_default_beats_naive_and_seasonal_naive_on_a_trending_series(trending):
    test = evaluate_checkpoint(trending.plain["checkpoints"]["best"], "test", [], "cpu")["metrics"]
    snaive = seasonal_naive_by_hand(column(trending.test))
    # measured: test MAE 0.31 against naive 1.28 and seasonal naive 0.58, in the data's units
    assert test["mae"] < 0.7 * test["naive_mae"] and test["mae"] < 0.8 * snaive, (test, snaive)
    assert 0.9 < test["naive_mae"] < 1.7  # data units: the season's step is about 1, the noise 0.3


def test_seasonal_difference_reports_the_seasonal_naive_forecast(trending):
    final = trending.seasonal["final"]
    assert set(final) == {"train/loss", "val/loss", "val/mae", "val/rmse", "val/naive_mae", "val/seasonal_naive_mae",
                          "lr"}
    test = evaluate_checkpoint(trending.seasonal["checkpoints"]["best"], "test", [], "cpu")["metrics"]
    assert test["seasonal_naive_mae"] == pytest.approx(seasonal_naive_by_hand(column(trending.test)), rel=1e-4)
    assert test["mae"] < test["seasonal_naive_mae"] < test["naive_mae"], test


def test_infer_continues_the_trend_in_the_data_units(trending, tmp_path):
    from dlcli.cli import app

    result = CliRunner().invoke(app, ["infer", trending.plain["checkpoints"]["best"], str(trending.test),
                                      "--steps", str(HORIZON), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    truth = [0.05 * t + 2.0 * math.sin(2 * math.pi * t / SEASON) for t in range(600, 600 + HORIZON)]
    got = [row["value"] for row in json.loads(result.stdout)]
    # beyond every training value (the trend reaches ~30 there; training stopped near 24)
    assert all(abs(g - t) < 1.0 for g, t in zip(got, truth)), (got, truth)


def test_a_window_too_short_for_its_differences_is_a_data_error(tmp_path):
    """A data-time check (exit 3, before anything is written): a config is never refused for it, so
    the configs inside checkpoints from before differencing (window 1, say) still load."""
    from dlcli.training.build import build_trainer

    config = validate(forecaster({"name": "sine", "length": 200, "window": 12, "seasonal_difference": 12}))
    with pytest.raises(DataError, match="data.dataset.window: 12 rows leave nothing once differenced"):
        build_trainer(config)
    validate(forecaster({"name": "sine", "window": 1}))


def test_legacy_meta_without_difference_forecasts_levels():
    meta = SimpleNamespace(sequence={"target_index": [0], "horizon": 1}, feature_mean=[0.0], feature_std=[1.0])
    task = ForecastTask(None, meta)
    x = torch.randn(2, 5, 1)
    assert task.lags == [1.0] and task.model_input(x) is x and task.levels(x[:, :1], x) is not None


# ---------------------------------------------------------------- several series in one CSV


@pytest.fixture(scope="module")
def two_series(tmp_path_factory):
    """Series 'a' near 0 and series 'b' near 1000, their rows interleaved in one file."""
    folder = tmp_path_factory.mktemp("ids")
    ids, values = [], []
    for t in range(100):
        for name, level in (("a", 0.0), ("b", 1000.0)):
            ids.append(name)
            values.append(level + t * 0.5 + math.sin(t / 3))
    path = write_csv(folder / "many.csv", {"store": ids, "sales": values})
    return SimpleNamespace(folder=folder, path=path,
                           dataset={"name": "timeseries", "path": str(path), "id": "store", "window": 8, "horizon": 2})


def test_windows_never_cross_from_one_series_into_the_next(two_series):
    config = validate(forecaster(two_series.dataset))
    train, val = train_val_sources(config.data, 0)
    assert train.segments == [80, 80] and val.segments == [20, 20]  # each series split by position
    meta = describe(train, config.data)
    for source, per_series in ((train, 80), (val, 20)):
        prepared = prepare(source, meta)
        windows = prepared.x[..., 0] * meta.feature_std[0] + meta.feature_mean[0]  # back to the data's units
        targets = prepared.y[..., 0] * meta.feature_std[0] + meta.feature_mean[0]
        spans = torch.cat([windows, targets], 1)
        low, high = spans < 500, spans > 500
        assert bool((low.all(1) | high.all(1)).all())  # every window lies in one series
        assert len(spans) == 2 * (per_series - 8 - 2 + 1)  # and each series gives all of its windows


def test_infer_forecasts_each_series_of_a_file(two_series):
    from dlcli.cli import app

    summary = fit(forecaster(two_series.dataset, epochs=2), two_series.folder / "runs")
    result = CliRunner().invoke(app, ["infer", summary["checkpoints"]["last"], str(two_series.path), "--json",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["store"], r["step"]) for r in rows] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert abs(rows[0]["sales"] - 50) < 10 and abs(rows[2]["sales"] - 1050) < 10  # each from its own history


def test_resuming_a_run_from_before_differencing_asks_for_difference_0():
    from dlcli.training.resume import config_differences

    old = {"data": {"dataset": {"name": "sine", "window": 8}}}  # a checkpoint's config from before
    assert config_differences(old, {"data": {"dataset": {"name": "sine", "window": 8, "difference": 1,
                                                         "seasonal_difference": 0}}}) == ["data.dataset.difference"]
    assert config_differences(old, {"data": {"dataset": {"name": "sine", "window": 8, "difference": 0,
                                                         "seasonal_difference": 0}}}) == []
