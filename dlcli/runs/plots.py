"""`dlcli plot RUN_DIR... --metric val/acc --output cmp.png`: one metric of several runs on one figure."""

from pathlib import Path

from dlcli.errors import ConfigError, DataError
from dlcli.runs.rundir import read_records


def epoch_series(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    log = Path(run_dir) / "metrics.jsonl"
    if not log.is_file():
        raise DataError(f"{run_dir}: no metrics.jsonl (is it a run directory?)")
    names: set[str]
    points, names = [], set()
    for record in read_records(log):
        if record.get("event") != "epoch":
            continue
        names.update(k for k in record if "/" in k)
        if isinstance(record.get(metric), (int, float)):
            points.append((record["epoch"], record[metric]))
    if not points:
        raise ConfigError(f"--metric: {run_dir} has no {metric!r}; available: {', '.join(sorted(names)) or 'none'}")
    return points


def plot_runs(run_dirs: list[str], metric: str, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {str(Path(d)): epoch_series(Path(d), metric) for d in run_dirs}
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, points in series.items():
        ax.plot(*zip(*points), marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    fig.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
