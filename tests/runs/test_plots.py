"""dlcli plot: several runs' metric on one figure; clear errors for bad inputs."""

import json

from typer.testing import CliRunner

from dlcli.cli import app


def fake_run(folder, values):
    folder.mkdir(parents=True)
    lines = [json.dumps({"event": "step", "epoch": 1, "step": 1, "train/loss": 9.0})]
    lines += [json.dumps({"event": "epoch", "epoch": i + 1, "step": i + 1, "val/acc": v}) for i, v in enumerate(values)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_plot_writes_an_image(tmp_path):
    a = fake_run(tmp_path / "a", [0.5, 0.7, 0.8])
    b = fake_run(tmp_path / "b", [0.4, 0.9])
    out = tmp_path / "cmp.png"
    result = CliRunner().invoke(app, ["plot", str(a), str(b), "--metric", "val/acc", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plot_errors(tmp_path):
    a = fake_run(tmp_path / "a", [0.5])
    runner = CliRunner()
    unknown = runner.invoke(app, ["plot", str(a), "--metric", "val/f1", "--output", str(tmp_path / "x.png")])
    assert unknown.exit_code == 2 and "available: val/acc" in unknown.output
    missing = runner.invoke(app, ["plot", str(tmp_path / "nope"), "--output", str(tmp_path / "x.png")])
    assert missing.exit_code == 3 and "no metrics.jsonl" in missing.output
    bad_name = runner.invoke(app, ["plot", str(a), "--output", str(tmp_path / "x.txt")])
    assert bad_name.exit_code == 2
