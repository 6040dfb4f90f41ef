"""`dlcli runs [DIR]`: one row per run directory, from its summary.json (or its metrics log while
a run has none: running, or killed before it could write one)."""

import json
from pathlib import Path

from dlcli.runs.rundir import read_records


def collect_runs(root: str) -> list[dict]:
    """Rows for every runs/<name>/<version>/ under root, oldest first."""
    # RUNS/<name>/<version>, cross-validation folds RUNS/<name>/<version>/fold-i, or ROOT/<version>
    # when ROOT is one name's folder (or a cross-validation's)
    patterns = ("*/*/config.yaml", "*/*/fold-*/config.yaml", "*/config.yaml")
    folders = {p.parent for pattern in patterns for p in Path(root).glob(pattern)}
    return [_row(folder) for folder in sorted(folders, key=lambda p: p.stat().st_mtime)]


def _row(folder: Path) -> dict:
    fold = folder.name.startswith("fold-") and (folder.parent / "folds.json").is_file()
    name, version = (folder.parent.parent.name, f"{folder.parent.name}/{folder.name}") if fold else \
        (folder.parent.name, folder.name)
    row = {"name": name, "version": version, "path": str(folder), "status": "incomplete",
           "monitor": None, "best": None, "epochs": 0, "seconds": None, "device": None}
    summary = _read_json(folder / "summary.json")
    if isinstance(summary, dict):  # a hand-edited or foreign file shows its fields only where they make sense
        best = summary.get("best")
        row.update(status=_text(summary.get("status")) or "incomplete", monitor=_text(summary.get("monitor")),
                   best=_number(best.get("value")) if isinstance(best, dict) else None,
                   epochs=_number(summary.get("epochs")) or 0, seconds=_number(summary.get("seconds")),
                   device=_text(summary.get("device")))
        return row
    epochs = [r for r in read_records(folder / "metrics.jsonl") if isinstance(r, dict) and r.get("event") == "epoch"]
    row["epochs"] = epochs[-1]["epoch"] if epochs else 0
    return row


def _text(value):
    return value if isinstance(value, str) else None


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

