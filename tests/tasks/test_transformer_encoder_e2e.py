"""The transformer as an encoder (issue 18): a text classifier (BPE tokens, CLS pooling, padding
mask) that learns, infers from --text and exports to ONNX with variable-length input, and a
forecaster that beats repeating the last value."""

import json

import numpy as np
import pytest
import torch

from dlcli.training import checkpoint
from dlcli.training.build import from_checkpoint
from tests.tasks.test_sequences_e2e import cli, fit, sentiment_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENCODER = {"name": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 2, "dropout": 0.0}


def config(name: str, dataset: dict, model: dict, epochs: int, monitor: str) -> dict:
    return {"name": name, "seed": 0, "data": {"dataset": dataset, "val_split": 0.25, "batch_size": 16},
            "model": {**ENCODER, **model}, "optimizer": {"name": "adamw", "lr": 0.003},
            "train": {"epochs": epochs, "device": "cpu", "log_interval": 1000, "monitor": monitor}}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clf")
    dataset = {"name": "text_classification", "path": str(sentiment_csv(folder / "reviews.csv")), "level": "bpe",
               "vocab_size": 300, "max_len": 24}
    summary = fit(config("clf", dataset, {"pooling": "cls"}, 6, "val/acc"), folder / "runs")
    return summary


def test_transformer_text_classifier_learns(classifier):
    final = classifier["final"]
    assert final["val/acc"] >= 0.9 and final["val/f1"] >= 0.9, final  # measured 1.0


def test_infer_classifies_texts_with_the_bpe_tokenizer(classifier):
    r = cli("infer", classifier["checkpoints"]["last"], "--text", "a lovely movie", "--text",
            "really terrible acting and a very poor plot", "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert [row["class"] for row in json.loads(r.stdout)] == ["pos", "neg"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_takes_ids_and_lengths_of_any_length(classifier, tmp_path, fmt):
    ckpt = classifier["checkpoints"]["last"]
    out = tmp_path / f"clf.{fmt}"
    r = cli("export", ckpt, "--format", fmt, "--output", out, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["max_abs_diff"] <= 1e-4

    # a batch shorter than the sample export traced (7 tokens, not 24), with padding in one row
    _, _, model, _, _ = from_checkpoint(checkpoint.load(ckpt), [], "cpu", ckpt)
    ids = torch.randint(2, 300, (3, 7), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([7, 3, 5])
    with torch.inference_mode():
        expected = model.eval()(ids, lengths)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": ids.numpy(), "lengths": lengths.numpy()})[0])
    else:
        with torch.inference_mode():
            got = torch.jit.load(str(out))(ids, lengths)
    assert np.allclose(got.numpy(), expected.numpy(), atol=1e-4)


def test_transformer_forecaster_beats_repeating_the_last_value(tmp_path):
    dataset = {"name": "sine", "length": 1200, "period": 40, "noise": 0.05, "window": 24, "horizon": 4}
    summary = fit(config("sine", dataset, {"positions": "sinusoidal"}, 5, "val/mae"), tmp_path)
    final = summary["final"]
    assert final["val/mae"] < 0.7 * final["val/naive_mae"], final
