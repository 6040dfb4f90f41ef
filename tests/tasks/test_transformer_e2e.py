"""The transformer language model end to end (issue 18): a tiny character LM on a generated grammar
reaches low perplexity, a mid-epoch resume is bitwise exact, `infer --prompt` samples repeatably with
a KV cache (--num, --top-p, a prompt longer than the context cut with a note), and bits per character.

Training runs in-process on tiny data (module-scoped fixtures); a few checks go through the CLI in
process (typer's CliRunner)."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from dlcli.inference.evaluate import evaluate_checkpoint
from dlcli.inference.predict import infer
from dlcli.training import checkpoint
from tests.tasks.test_sequences_e2e import (
    ENTROPY_FLOOR,
    GRAMMAR_WORDS,
    cli,
    fit,
    grammar_corpus,
    records,
    same_tensors,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS_PER_EPOCH = 16  # 4,000 characters: 80% in 124 windows of 32, batches of 8 (the last one short)


def lm_config(path: Path, epochs: int = 8, **options) -> dict:
    return {"name": "gpt", "seed": 0, "task": "language_model",
            "data": {"dataset": {"name": "text", "path": str(path), "seq_len": 32}, "val_split": 0.2,
                     "batch_size": 8},
            "model": {"name": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 2, "dropout": 0.1,
                      "positions": "rope", "tie_weights": True},
            "optimizer": {"name": "adamw", "lr": 0.01},
            "train": {"epochs": epochs, "device": "cpu", "log_interval": 1000, "monitor": "val/perplexity",
                      **options}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "grammar.txt"
    path.write_text(grammar_corpus())
    return path


@pytest.fixture(scope="module")
def gpt(corpus, tmp_path_factory):
    """An uninterrupted 8-epoch run with a checkpoint every 20 steps (dropout on: the RNG matters)."""
    root = tmp_path_factory.mktemp("gpt")
    config = lm_config(corpus, checkpoint_every={"steps": 20}, keep_last=100)
    summary = fit(config, root, "full")
    return SimpleNamespace(summary=summary, config=config, root=root, run=Path(summary["run_dir"]),
                           ckpt=summary["checkpoints"]["last"])


def test_tiny_transformer_lm_learns_the_grammar_to_low_perplexity(gpt):
    summary = gpt.summary
    assert summary["status"] == "finished" and summary["steps"] == 8 * STEPS_PER_EPOCH, summary
    final = summary["final"]
    # measured 1.3 (uniform guessing over the 23-token vocabulary would be 23); the entropy floor is 1.14
    assert ENTROPY_FLOOR * 0.95 < final["val/perplexity"] < 1.6, final
    assert final["val/acc"] > 0.8, final
    # characters: bits per character next to perplexity, log2 of it
    assert final["val/bpc"] == pytest.approx(math.log2(final["val/perplexity"]))


def test_mid_epoch_resume_ends_with_the_uninterrupted_weights(gpt):
    step = 20  # epoch 2, batch 4
    saved = checkpoint.load(gpt.run / "checkpoints" / f"step-{step:09d}.pt")
    assert saved["state"]["epoch"] == 2 and saved["position"]["batch_in_epoch"] == 4
    run = gpt.root / "resumed"
    shutil.copytree(gpt.run, run)
    from dlcli.cli.progress import Progress
    from dlcli.config import validate
    from dlcli.training.session import train

    cfg = validate(gpt.config)
    summary = train(cfg, str(gpt.root), None, Progress(8, quiet=True),
                    resume=str(run / "checkpoints" / f"step-{step:09d}.pt"))
    full, resumed = checkpoint.load(gpt.ckpt), checkpoint.load(summary["checkpoints"]["last"])
    assert same_tensors(resumed["model"], full["model"]), "weights differ after a mid-epoch resume"
    for i, state in full["optimizer"]["state"].items():
        assert same_tensors(state, resumed["optimizer"]["state"][i]), i
    assert summary["final"] == gpt.summary["final"]
    assert records(run) == records(gpt.run)


def generate(ckpt, seed, prompt="the ", length=100, **options):
    kind, result = infer(ckpt, [], "cpu", options.pop("top_k", None),
                         {"prompt": prompt, "length": length, "seed": seed, **options})
    assert kind == "generation"
    return result


def test_generation_is_repeatable_with_a_seed_and_writes_the_grammar(gpt, corpus):
    first, again, other = (generate(gpt.ckpt, seed) for seed in (5, 5, 6))
    assert first["generated"] == again["generated"] and first["generated"] != other["generated"]
    assert len(first["generated"]) == 100 and set(first["generated"]) <= set(corpus.read_text())
    words = generate(gpt.ckpt, 3, temperature=0.5, length=300, top_p=0.9)["text"].replace(".", " ").split()[:-1]
    assert sum(w in GRAMMAR_WORDS for w in words) >= 0.9 * len(words), words

    several = generate(gpt.ckpt, 5, num=3, top_k=5)
    texts = [s["generated"] for s in several["samples"]]
    assert len(texts) == 3 and len(set(texts)) == 3 and several["generated"] == texts[0]
    assert all(len(t) == 100 for t in texts)


def test_a_prompt_longer_than_the_context_is_cut_with_a_note(gpt):
    prompt = "the cat sat on the mat. the dog ran on the log. "  # 48 characters, context 32
    result = generate(gpt.ckpt, 1, prompt=prompt, length=10)
    assert result["prompt_cut"] == len(prompt) - 32 and len(result["prompt_ids"]) == 32
    shown = cli("infer", gpt.ckpt, "--prompt", prompt, "--length", 10, "--seed", 1, "--device", "cpu")
    assert shown.exit_code == 0, shown.stderr
    assert f"first {len(prompt) - 32} tokens were left out" in shown.stderr
    assert shown.stdout == prompt + result["generated"] + "\n"

    as_json = cli("infer", gpt.ckpt, "--prompt", "the", "--num", 2, "--top-p", 0.8, "--seed", 2, "--json",
                  "--device", "cpu")
    assert as_json.exit_code == 0, as_json.stderr
    assert len(json.loads(as_json.stdout)["samples"]) == 2
    no_mass = cli("infer", gpt.ckpt, "--prompt", "the", "--top-p", 0, "--device", "cpu")
    assert no_mass.exit_code == 2 and "--top-p: the share of probability mass" in no_mass.stderr


def test_eval_reports_bits_per_character(gpt):
    result = evaluate_checkpoint(gpt.ckpt, "val", [], "cpu")
    assert set(result["metrics"]) == {"loss", "acc", "perplexity", "bpc"}
    assert result["metrics"]["bpc"] == pytest.approx(gpt.summary["final"]["val/bpc"], rel=1e-5)


@pytest.mark.slow
def test_train_compile_trains_the_transformer_to_the_eager_numbers(tmp_path, monkeypatch):
    """train.compile goes through torch.compile; inductor's C++ build takes minutes on a busy CPU, so
    the check compiles with the aot_eager backend and fullgraph=True (no graph breaks in the model)."""
    import torch

    real = torch.compile
    calls = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: calls.append(m) or real(m, backend="aot_eager",
                                                                                  fullgraph=True, **kw))
    path = tmp_path / "small.txt"
    path.write_text(grammar_corpus(100))  # 62 training windows: 2 batches of 31, one shape, one compilation
    runs = []
    for compiled in (True, False):
        config = lm_config(path, epochs=2, compile=compiled)
        config["data"]["batch_size"] = 31
        runs.append(fit(config, tmp_path / "runs"))
    assert len(calls) == 1 and runs[0]["steps"] == 4
    assert runs[0]["final"] == pytest.approx(runs[1]["final"], rel=1e-5)  # measured: equal


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_a_transformer_language_model_exports(gpt, tmp_path, fmt, suffix):
    from dlcli.inference.export import export

    result = export(str(gpt.ckpt), fmt, str(tmp_path / f"lm{suffix}"), 1e-4)
    assert result["max_abs_diff"] <= 1e-4
