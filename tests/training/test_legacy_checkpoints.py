"""A run written by dlcli before the Task redesign and the package reorganisation (commit 2697ff2:
a digits MLP, two epochs; tests/fixtures/legacy_run) still evaluates to the numbers that dlcli
reported then, infers, and resumes for more epochs."""

import json
import shutil

import pytest

from tests.conftest import REPO

LEGACY = REPO / "tests" / "fixtures" / "legacy_run"


@pytest.fixture
def legacy_run(tmp_path):
    run = tmp_path / "runs" / "legacy" / "v1"
    shutil.copytree(LEGACY, run)
    return run


def test_a_legacy_checkpoint_evaluates_to_what_its_own_dlcli_reported(legacy_run, run_cli):
    reported = json.loads((legacy_run / "summary.json").read_text())["final"]
    result = run_cli("eval", legacy_run / "checkpoints" / "last.pt", "--split", "val", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    # Counts (accuracy, F1, top-5) are exact; the mean loss is a float32 sum whose last bits depend on
    # the CPU's SIMD kernels (the fixture was written on an AMD EPYC, CI may run on an Intel Xeon).
    assert metrics["loss"] == pytest.approx(reported["val/loss"], rel=1e-6)
    for name in ("acc", "f1", "top5"):
        assert metrics[name] == pytest.approx(reported[f"val/{name}"], abs=1e-9), name


def test_a_legacy_checkpoint_infers_and_resumes(legacy_run, run_cli):
    result = run_cli("infer", legacy_run / "checkpoints" / "last.pt", REPO / "examples" / "digits", "--json")
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert predictions and all(row["class"] in [str(d) for d in range(10)] for row in predictions)

    resumed = run_cli("train", legacy_run / "config.yaml", "--resume", legacy_run, "train.epochs=3", "-q", "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "finished" and summary["epochs"] == 3
    events = [json.loads(line) for line in (legacy_run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]
