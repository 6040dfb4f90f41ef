"""`dlcli sweep cfg.yaml key=v1,v2 ... [--random N] [--seeds K]`: expand a grid (or N random draws
from it) into runs, run them one after another (a failed run is reported and the rest go on),
and end with a table sorted by a metric plus a CSV file."""

import csv
import itertools
import random
import time
from pathlib import Path

from dlcli.errors import ConfigError, DlcliError, Interrupted, first_line, unexpected


def split_values(text: str) -> list[str]:
    """'0.1,0.01' -> ['0.1', '0.01']; commas inside [], {} or quotes don't split: '[128],[256,128]'."""
    values, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        current += ch
    return values + [current]


def expand(axes: list[str], random_draws: int | None, seeds: int | None, sweep_seed: int) -> list[list[str]]:
    """Override lists, one per run: the grid's product, or `random_draws` distinct picks from it."""
    grid, keys = [], []
    for axis in axes:
        key, sep, text = axis.partition("=")
        if not sep or not key:
            raise ConfigError(f"sweep axis {axis!r}: expected key=v1,v2,...")
        if key in keys or (key == "seed" and seeds):
            raise ConfigError(f"sweep axis {axis!r}: {key} is already swept" + (" by --seeds" if key == "seed" else ""))
        keys.append(key)
        grid.append([f"{key}={value}" for value in split_values(text)])
    combos = [list(c) for c in itertools.product(*grid)]
    if random_draws is not None:
        combos = random.Random(sweep_seed).sample(combos, min(random_draws, len(combos)))
    if seeds:
        combos = [c + [f"seed={s}"] for c in combos for s in range(seeds)]
    return combos


def validate_all(config_path: str, combos: list[list[str]]) -> list:
    """Every point's config, or one ConfigError listing every point's problems."""
    from dlcli.config import load

    configs, problems = [], []
    for overrides in combos:
        try:
            configs.append(load(config_path, overrides))
        except ConfigError as err:
            problems += [f"[{' '.join(overrides)}] {p}" for p in err.problems]
    if problems:
        raise ConfigError(problems)
    return configs


def run_sweep(config_path: str, combos: list[list[str]], metric: str | None, output_dir: str | None,
              progress_factory) -> tuple[list[dict], Path, str]:
    """Validate every run first (all errors at once), then train each; returns rows, CSV path, metric.
    A stop signal ends the sweep: the CSV is written (points not reached: `not run`), then it re-raises."""
    from dlcli.tasks import task_class
    from dlcli.training.session import runs_root, train, train_command

    configs = validate_all(config_path, combos)
    metric = metric or configs[0].train.monitor
    _check_metric(metric, configs)
    rows = [{"overrides": " ".join(o), "status": "not run", metric: None, "run_dir": None, "error": None}
            for o in combos]
    out = Path(runs_root(output_dir, configs[0])) / configs[0].name / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    sign = 1 if task_class(configs[0].task).metric_mode(metric) == "min" else -1
    for row, overrides, config in zip(rows, combos, configs):
        row["status"] = "failed"
        try:
            summary = train(config, output_dir, None, progress_factory(config),
                            command=train_command(config_path, overrides))
            row.update(status=summary["status"], run_dir=summary["run_dir"],
                       **{metric: _metric_value(summary, metric)})
        except Interrupted as err:
            row.update(status="interrupted", error=first_line(err))
            write_csv(rows, out)
            raise
        except DlcliError as err:
            row["error"] = first_line(err)
        except Exception as err:  # noqa: BLE001  a bug in one point must not cost the others their runs
            row["error"] = unexpected(err)
    rows.sort(key=lambda r: (r[metric] is None, sign * (r[metric] or 0)))
    write_csv(rows, out)
    return rows, out, metric


def _check_metric(metric: str, configs: list) -> None:
    """The sort metric must be one that some point produces (points may differ, e.g. in val_split)."""
    from dlcli.tasks import known_metrics

    known = sorted({m for c in configs for m in known_metrics(c.task, c.data.val_split > 0, config=c)})
    if metric == "last":  # train.monitor: last (a GAN without gan_eval) names no metric to sort by
        raise ConfigError("--metric: train.monitor is last, which names no metric; give --metric "
                          f"(available: {', '.join(known)})")
    if metric not in known:
        raise ConfigError(f"--metric: unknown metric {metric!r}; available: {', '.join(known)}")


def _metric_value(summary: dict, metric: str):
    if summary.get("monitor") == metric and summary["best"]["value"] is not None:
        return summary["best"]["value"]
    return summary["final"].get(metric)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
