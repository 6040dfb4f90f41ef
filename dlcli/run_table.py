"""`dlcli runs [DIR]`: one row per run directory, from its summary.json (or its metrics log while
a run has none: running, or killed before it could write one)."""

import json
from pathlib import Path

from dlcli.runs import read_records


def collect_runs(root: str) -> list[dict]:
    """Rows for every runs/<name>/<version>/ under root, oldest first."""
    folders = [p.parent for p in Path(root).glob("*/*/config.yaml")]
    return [_row(folder) for folder in sorted(folders, key=lambda p: p.stat().st_mtime)]


def _row(folder: Path) -> dict:
    row = {"name": folder.parent.name, "version": folder.name, "path": str(folder), "status": "incomplete",
           "monitor": None, "best": None, "epochs": 0, "seconds": None, "device": None}
    summary = _read_json(folder / "summary.json")
    if summary:
        row.update(status=summary.get("status"), monitor=summary.get("monitor"),
                   best=(summary.get("best") or {}).get("value"), epochs=summary.get("epochs"),
                   seconds=summary.get("seconds"), device=summary.get("device"))
        return row
    epochs = [r for r in read_records(folder / "metrics.jsonl") if r.get("event") == "epoch"]
    row["epochs"] = epochs[-1]["epoch"] if epochs else 0
    return row


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

