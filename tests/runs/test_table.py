"""dlcli runs: rows from summary.json, or from metrics.jsonl for runs that never wrote one."""

import io
import json

from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.runs.table import collect_runs
from dlcli.training.session import train
from tests.conftest import tiny_digits_config


def test_finished_and_incomplete_runs(tmp_path):
    root = tmp_path / "runs"
    config = validate(tiny_digits_config(train={"epochs": 2, "device": "cpu", "monitor": "val/acc"}))
    summary = train(config, str(root), None, Progress(2, quiet=True, stream=io.StringIO()))
    killed = root / "tiny" / "v9"  # what a SIGKILLed run leaves: config, metrics, no summary
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "config.yaml").write_text("name: tiny\n")
    (killed / "metrics.jsonl").write_text(json.dumps({"event": "epoch", "epoch": 3, "step": 9}) + "\n{\"cut")

    rows = collect_runs(str(root))
    assert [(r["version"], r["status"], r["epochs"]) for r in rows] == [("v1", "finished", 2), ("v9", "incomplete", 3)]
    assert rows[0]["monitor"] == "val/acc" and rows[0]["best"] == summary["best"]["value"]
    assert rows[0]["device"] == "cpu"

    result = CliRunner().invoke(app, ["runs", str(root), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == rows
    table = CliRunner().invoke(app, ["runs", str(root)])
    assert table.exit_code == 0 and "finished" in table.stdout and "incomplete" in table.stdout
    # one name's folder lists its versions too
    assert [r["version"] for r in collect_runs(str(root / "tiny"))] == ["v1", "v9"]


def test_missing_runs_folder_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "runs folder not found" in result.output


def test_a_malformed_summary_shows_as_one_odd_row_not_a_failure(tmp_path):
    root = tmp_path / "runs"
    for version, text in [("v1", "[1, 2]"), ("v2", '{"status": "finished", "best": "x", "seconds": "long"}')]:
        (root / "tiny" / version).mkdir(parents=True)
        (root / "tiny" / version / "config.yaml").write_text("name: tiny\n")
        (root / "tiny" / version / "summary.json").write_text(text)
    rows = collect_runs(str(root))
    assert [(r["version"], r["status"], r["best"], r["seconds"]) for r in rows] == [
        ("v1", "incomplete", None, None), ("v2", "finished", None, None)]
    table = CliRunner().invoke(app, ["runs", str(root)])
    assert table.exit_code == 0, table.output
