"""dlcli export: each format round-trips and passes its numerical check, for an MLP and a CNN."""

import io
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.training.session import train
from tests.conftest import REPO, tiny_digits_config


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def checkpoint(request, tmp_path_factory):
    model = {"mlp": {"name": "mlp", "hidden": [16]},
             "cnn": {"name": "cnn", "channels": [8, 16], "batch_norm": True, "head": [16]}}[request.param]
    config = validate(tiny_digits_config(model=model, train={"epochs": 1, "device": "cpu"}))
    summary = train(config, str(tmp_path_factory.mktemp("runs")), None, Progress(1, quiet=True, stream=io.StringIO()))
    return summary["checkpoints"]["last"]


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt"), ("safetensors", ".safetensors")])
def test_export_round_trips(checkpoint, tmp_path, fmt, suffix):
    out = tmp_path / f"model{suffix}"
    result = CliRunner().invoke(app, ["export", checkpoint, "--format", fmt, "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == fmt and out.stat().st_size > 1000
    assert report["max_abs_diff"] <= 1e-4 and report["input_shape"] == ["batch", 1, 8, 8]


def test_safetensors_carries_the_config(checkpoint, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "m.safetensors"
    assert CliRunner().invoke(app, ["export", checkpoint, "--format", "safetensors", "-o", str(out)]).exit_code == 0
    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["dlcli_config"])["name"] == "tiny"
    assert json.loads(metadata["dlcli_meta"])["class_names"] == [str(i) for i in range(10)]


def test_export_errors(checkpoint, tmp_path, monkeypatch):
    import dlcli.inference.export

    runner = CliRunner()
    bad_format = runner.invoke(app, ["export", checkpoint, "--format", "tflite", "-o", str(tmp_path / "x")])
    assert bad_format.exit_code == 2 and "--format" in bad_format.output
    negative = runner.invoke(app, ["export", checkpoint, "--format", "onnx", "-o", str(tmp_path / "x.onnx"),
                                   "--tolerance", "-1"])
    assert negative.exit_code == 2 and "--tolerance" in negative.output
    real_run = dlcli.inference.export._run_onnx
    monkeypatch.setattr(dlcli.inference.export, "_run_onnx", lambda out, sample: real_run(out, sample) + 1e-3)  # a bad export
    off = runner.invoke(app, ["export", checkpoint, "--format", "onnx", "-o", str(tmp_path / "x.onnx")])
    assert off.exit_code == 1 and "differs from the PyTorch model by 0.001" in off.output


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_export_never_overwrites_the_checkpoint_it_reads_or_its_links(checkpoint, tmp_path, fmt):
    """best.pt, last.pt and step-*.pt of a run are hard links to one file: writing any of them would
    destroy them all."""
    from pathlib import Path

    from dlcli.training import checkpoint as checkpoints

    folder = Path(checkpoint).parent
    for target in sorted(folder.glob("*.pt")):
        result = CliRunner().invoke(app, ["export", checkpoint, "--format", fmt, "-o", str(target)])
        assert result.exit_code == 2 and "is the file this command reads" in result.stderr, result.output
    for target in folder.glob("*.pt"):
        assert checkpoints.load(target)["model"]  # all still checkpoints


def test_export_creates_a_missing_output_folder(checkpoint, tmp_path):
    out = tmp_path / "new" / "deeper" / "m.onnx"
    result = CliRunner().invoke(app, ["export", checkpoint, "--format", "onnx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000 and [p.name for p in out.parent.iterdir()] == ["m.onnx"]  # no temp left


def _trained(config: dict, folder) -> str:
    summary = train(validate(config), str(folder), None, Progress(1, quiet=True, stream=io.StringIO()))
    return summary["checkpoints"]["last"]


@pytest.fixture(scope="module")
def other_tasks(tmp_path_factory):
    """Checkpoints of a GAN (the generator is exported), a tied-weight LSTM language model, and a
    row-sequence LSTM classifier."""
    folder = tmp_path_factory.mktemp("tasks")
    text = folder / "corpus.txt"
    text.write_text("the cat sat on the mat. " * 40)
    gan = {"name": "g", "data": {"dataset": {"name": "digits"}, "batch_size": 64},
           "model": {"name": "gan", "latent_dim": 8, "generator": {"hidden": [16]}, "discriminator": {"hidden": [16]}},
           "train": {"epochs": 1, "device": "cpu"}}
    lm = {"name": "lm", "data": {"dataset": {"name": "text", "path": str(text), "seq_len": 16}},
          "model": {"name": "lstm", "embedding_dim": 16, "hidden_size": 16, "tie_weights": True},
          "train": {"epochs": 1, "device": "cpu"}}
    rows = {"name": "rows", "data": {"dataset": {"name": "digits_rows"}},
            "model": {"name": "gru", "hidden_size": 16}, "train": {"epochs": 1, "device": "cpu"}}
    return {"gan": (_trained(gan, folder), ["batch", 8]), "lm": (_trained(lm, folder), ["batch", 16]),
            "rows": (_trained(rows, folder), ["batch", 8, 8])}


@pytest.mark.parametrize("task", ["gan", "lm", "rows"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_export_gan_generator_and_recurrent_models(other_tasks, tmp_path, task, fmt):
    checkpoint, input_shape = other_tasks[task]
    out = tmp_path / f"model.{fmt}"
    result = CliRunner().invoke(app, ["export", checkpoint, "--format", fmt, "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["max_abs_diff"] <= 1e-4 and report["input_shape"] == input_shape


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory):
    return _trained(tiny_digits_config(train={"epochs": 1, "device": "cpu"}), tmp_path_factory.mktemp("mlp"))


# An exported file that disagrees with the PyTorch model (a runtime or exporter bug): its reader's
# outputs shifted by 1, far above any tolerance. (A checkpoint with NaN weights is refused before
# export starts: exit 4, tests/training/test_checkpoint_integrity.py.)
DISAGREEING = """import sys
import dlcli.inference.export as export
honest = export._run_{fmt}
export._run_{fmt} = lambda out, sample: honest(out, sample) + 1
from dlcli.cli import main
sys.argv[0] = "dlcli"
main()
"""


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_a_rejected_export_leaves_the_existing_file_as_it_was(mlp_checkpoint, tmp_path, fmt, monkeypatch):
    from dlcli.inference import export

    honest = getattr(export, f"_run_{fmt}")
    monkeypatch.setattr(export, f"_run_{fmt}", lambda out, sample: honest(out, sample) + 1)
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"an earlier, good export")
    result = CliRunner().invoke(app, ["export", str(mlp_checkpoint), "--format", fmt, "--output", str(existing)])
    assert result.exit_code == 1 and "differs from the PyTorch model by 1 (> 0.0001)" in result.stderr, result.output
    assert existing.read_bytes() == b"an earlier, good export"
    assert os.listdir(tmp_path) == ["existing.bin"]  # no temporary left


def test_a_rejected_export_in_a_real_process_keeps_the_file_and_prints_no_library_warning(mlp_checkpoint, tmp_path):
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"an earlier, good export")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", DISAGREEING.format(fmt="torchscript"), "export", str(mlp_checkpoint),
                             "--format", "torchscript", "--output", str(existing)], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 1 and "differs from the PyTorch model by 1" in result.stderr, result.stderr
    assert existing.read_bytes() == b"an earlier, good export" and os.listdir(tmp_path) == ["existing.bin"]
    assert "Warning" not in result.stderr  # torch.jit.trace's FutureWarning (see below)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_exported_files_get_the_usual_mode_for_new_files(mlp_checkpoint, tmp_path, fmt):
    before = os.umask(0o027)
    try:
        result = CliRunner().invoke(app, ["export", mlp_checkpoint, "--format", fmt, "-o", str(tmp_path / "m")])
    finally:
        os.umask(before)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o640  # 0666 less the umask (safetensors gave 0600)


def test_export_prints_library_warnings_only_with_debug(run_cli, mlp_checkpoint, tmp_path):
    """torch.jit.trace/load warn FutureWarning (deprecated); a user cannot act on that."""
    plain = run_cli("export", mlp_checkpoint, "--format", "torchscript", "-o", tmp_path / "a.pt")
    assert plain.returncode == 0 and "Warning" not in plain.stderr, plain.stderr
    debug = run_cli("--debug", "export", mlp_checkpoint, "--format", "torchscript", "-o", tmp_path / "b.pt")
    assert debug.returncode == 0 and "FutureWarning: `torch.jit.trace` is deprecated" in debug.stderr, debug.stderr
