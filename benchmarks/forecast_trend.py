"""Forecasting a series with a trend and a season: dlcli's test MAE next to the naive forecast
(repeat the last value) and the seasonal naive one (repeat the value one season back), for the
default (`difference: 1`), for levels as before (`difference: 0`) and with `seasonal_difference`.

Run: python benchmarks/forecast_trend.py [--epochs 15] [--length 720] [--season 12]
The series (written to a temporary folder): a linear trend plus a sine of period `season` plus
Gaussian noise; the test file continues the training file in time, so the trend carries on past
every value training saw (as a real trending series does)."""

import argparse
import io
import math
import random
import tempfile
import time
from pathlib import Path


def write_series(path: Path, start: int, length: int, season: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = ["t,value"]
    for t in range(start, start + length):
        value = 0.05 * t + 2.0 * math.sin(2 * math.pi * t / season) + rng.gauss(0, 0.3)
        rows.append(f"{t},{value:.5f}")
    path.write_text("\n".join(rows) + "\n")


def run(folder: Path, variant: dict, args) -> dict:
    from dlcli.cli.progress import Progress
    from dlcli.config import validate
    from dlcli.inference.evaluate import evaluate_checkpoint
    from dlcli.training.session import train

    dataset = {"name": "timeseries", "path": str(folder / "train.csv"), "test_path": str(folder / "test.csv"),
               "columns": ["value"], "window": 2 * args.season, "horizon": args.horizon, **variant}
    config = validate({"name": "trend", "seed": 0, "task": "forecasting",
                       "data": {"dataset": dataset, "val_split": 0.2, "batch_size": 32},
                       "model": {"name": "lstm", "embedding_dim": 16, "hidden_size": 32},
                       "optimizer": {"name": "adam", "lr": 0.003},
                       "train": {"epochs": args.epochs, "device": "cpu", "grad_clip": {"max_norm": 1.0},
                                 "monitor": "val/mae", "threads": args.threads}})
    started = time.perf_counter()
    summary = train(config, str(folder / "runs"), None, Progress(args.epochs, quiet=True, stream=io.StringIO()))
    seconds = time.perf_counter() - started
    metrics = evaluate_checkpoint(summary["checkpoints"]["best"], "test", [], "cpu")["metrics"]
    return {**metrics, "seconds": seconds}


def seasonal_naive(folder: Path, args) -> float:
    """The seasonal naive MAE over the same test windows, computed here by hand."""
    values = [float(line.split(",")[1]) for line in (folder / "test.csv").read_text().splitlines()[1:]]
    window, horizon, k = 2 * args.season, args.horizon, args.season
    errors = []
    for start in range(len(values) - window - horizon + 1):
        for h in range(1, horizon + 1):
            errors.append(abs(values[start + window - 1 + h - k * math.ceil(h / k)] - values[start + window - 1 + h]))
    return sum(errors) / len(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--length", type=int, default=720, help="training rows (the test file adds a quarter)")
    parser.add_argument("--season", type=int, default=12)
    parser.add_argument("--horizon", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_series(folder / "train.csv", 0, args.length, args.season, 0)
        write_series(folder / "test.csv", args.length, args.length // 4, args.season, 1)
        snaive = seasonal_naive(folder, args)
        print(f"test split: {args.length // 4} rows after {args.length} training rows; window {2 * args.season}, "
              f"horizon {args.horizon}; seasonal naive MAE {snaive:.4g} (by hand)")
        print("| variant | test MAE | naive MAE | seasonal naive MAE | MAE / naive | MAE / seasonal naive | s |")
        print("|---|---|---|---|---|---|---|")
        reported = {}
        for name, variant in (("difference: 1 (default)", {}), ("difference: 0 (levels)", {"difference": 0}),
                              (f"difference: 1, seasonal_difference: {args.season}",
                               {"seasonal_difference": args.season})):
            m = run(folder, variant, args)
            print(f"| {name} | {m['mae']:.4g} | {m['naive_mae']:.4g} | {snaive:.4g} | {m['mae'] / m['naive_mae']:.3f} "
                  f"| {m['mae'] / snaive:.3f} | {m['seconds']:.0f} |", flush=True)
            reported.update({k: v for k, v in m.items() if k == "seasonal_naive_mae"})
        print(f"dlcli's own val/seasonal_naive_mae on the test split (with seasonal_difference): "
              f"{reported.get('seasonal_naive_mae', float('nan')):.4g}, by hand {snaive:.4g}")


if __name__ == "__main__":
    main()
