"""dlcli export: each format round-trips and passes its numerical check, for an MLP and a CNN."""

import io
import json

import pytest
from typer.testing import CliRunner

from dlcli.cli import app
from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.training.session import train
from tests.conftest import tiny_digits_config


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
