"""Sequences (issue #4) end to end: a character language model (with and without truncated BPTT,
including an exact mid-epoch resume), forecasting against the naive baseline, text classification,
what `eval` and `infer` report for each, clean errors for bad input, and the shipped LSTM configs.

Training runs in-process through `dlcli.training.session.train` on tiny data written into tmp_path; each
trained model is shared by the tests of its section (module-scoped fixtures). `dlcli infer` / `eval`
and most bad-input cases go through typer's CliRunner (the same command functions and exit-code
mapping as the real CLI); real `python -m dlcli` subprocesses are kept to a few.

The models are tiny, so the tests pin torch to one intra-op thread: on a busy 2-core machine two
spinning OpenMP threads made a 15-step LSTM epoch take 20+ s instead of 0.1 s.
"""

import csv
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from dlcli.cli.progress import Progress
from dlcli.config import load, validate
from dlcli.inference.evaluate import evaluate_checkpoint
from dlcli.inference.predict import infer
from dlcli.training import checkpoint
from dlcli.training.session import train
from tests.conftest import REPO

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # for subprocesses (see the module docstring)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- helpers


def fit(config: dict, root: Path, version: str | None = None) -> dict:
    cfg = validate(config)
    return train(cfg, str(root), version, Progress(cfg.train.epochs, quiet=True, stream=io.StringIO()))


def cli(*args):
    """`dlcli ARGS` in-process; the result has exit_code, stdout and stderr."""
    from dlcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def assert_one_error(code: int, stderr: str, expected: int, *needles: str) -> str:
    """Exit code, no traceback, exactly one `error:` line (plus an optional hint) naming the problem."""
    assert code == expected, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    others = [line for line in stderr.splitlines() if line and not line.startswith(("error: ", "hint: "))]
    assert len(errors) == 1 and not others, stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def train_config(name: str, dataset: dict, model: dict, epochs: int, monitor: str, **train_options) -> dict:
    return {"name": name, "seed": 0, "data": {"dataset": dataset, "val_split": 0.2, "batch_size": 16},
            "model": {"name": "lstm", **model}, "optimizer": {"name": "adam", "lr": 0.01},
            "train": {"epochs": epochs, "device": "cpu", "log_interval": 1000, "monitor": monitor, **train_options}}


def weights(path) -> dict:
    return checkpoint.load(path)["model"]


def same_tensors(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- a character language model

ANIMALS, VERBS, PLACES = ["cat", "dog", "bird"], ["sat", "ran", "slept"], ["mat", "log", "rug"]
GRAMMAR_WORDS = {"the", "on", *ANIMALS, *VERBS, *PLACES}
# Three uniform 3-way choices per ~25-character sentence: no model can get below this perplexity.
ENTROPY_FLOOR = math.exp(3 * math.log(3) / 25)  # ~1.14


def grammar_corpus(sentences: int = 200, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(f"the {rng.choice(ANIMALS)} {rng.choice(VERBS)} on the {rng.choice(PLACES)}. "
                   for _ in range(sentences))


def lm_config(path: Path, epochs: int, **train_options) -> dict:
    config = train_config("lm", {"name": "text", "path": str(path), "seq_len": 32},
                          {"embedding_dim": 32, "hidden_size": 64}, epochs, "val/perplexity", **train_options)
    if train_options.get("tbptt"):
        config["data"]["batch_size"] = 8  # 8 parallel streams of 32-character windows
        config["model"]["dropout"] = 0.1  # draws random numbers: an exact resume must restore the RNG too
    return config


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "grammar.txt"
    path.write_text(grammar_corpus())
    return path


@pytest.fixture(scope="module")
def lm_run(corpus_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    summary = fit(lm_config(corpus_file, epochs=6), root)
    return SimpleNamespace(summary=summary, ckpt=summary["checkpoints"]["last"], text=corpus_file.read_text())


def test_char_lm_learns_the_corpus_to_low_validation_perplexity(lm_run):
    summary = lm_run.summary
    assert summary["status"] == "finished" and summary["epochs"] == 6, summary
    final = summary["final"]
    vocab = checkpoint.load(lm_run.ckpt)["meta"]["vocab"]
    assert vocab[:2] == ["<pad>", "<unk>"] and sorted(vocab[2:]) == sorted(set(lm_run.text))  # 21 characters
    # measured 1.26 (uniform guessing over the vocabulary would be 23); the source's entropy floor is 1.14
    assert ENTROPY_FLOOR * 0.95 < final["val/perplexity"] < 2.0, final
    assert final["val/perplexity"] == pytest.approx(math.exp(final["val/loss"]))
    assert final["val/acc"] > 0.8, final
    # lower perplexity is better: the best checkpoint is the epoch with the lowest one
    epochs = [r for r in records(Path(summary["run_dir"])) if r["event"] == "epoch"]
    assert summary["best"]["value"] == min(r["val/perplexity"] for r in epochs)


def generate(ckpt, seed, prompt="the ", length=120, temperature=1.0, top_k=None):
    kind, result = infer(ckpt, [], "cpu", top_k, {"prompt": prompt, "length": length,
                                                   "temperature": temperature, "seed": seed})
    assert kind == "generation"
    return result


def test_generation_uses_the_vocabulary_and_is_repeatable_with_a_seed(lm_run):
    first, again, other = (generate(lm_run.ckpt, seed) for seed in (7, 7, 8))
    assert first["generated"] == again["generated"]  # same seed, same text
    assert first["generated"] != other["generated"]  # another seed, another draw
    for result in (first, other):
        assert len(result["generated"]) == 120 and result["tokens"] == 120
        assert set(result["generated"]) <= set(lm_run.text)  # never <pad>, <unk> or an unseen character
        assert result["text"] == "the " + result["generated"] and result["unknown_prompt_tokens"] == []

    # sampled cooler, the model writes the grammar's words
    words = generate(lm_run.ckpt, 3, temperature=0.5, length=300)["text"].replace(".", " ").split()[:-1]
    assert sum(w in GRAMMAR_WORDS for w in words) >= 0.9 * len(words), words
    # temperature 0 is greedy: the seed makes no difference
    assert generate(lm_run.ckpt, 1, temperature=0)["generated"] == generate(lm_run.ckpt, 2, temperature=0)["generated"]
    # characters the model never saw are read as <unk> and reported
    assert generate(lm_run.ckpt, 0, prompt="Zebra ", length=5)["unknown_prompt_tokens"] == ["Z"]


def test_eval_reports_perplexity_for_the_language_model(lm_run):
    result = evaluate_checkpoint(lm_run.ckpt, "val", [], "cpu")
    assert result["task"] == "language_model" and result["unit"] == "tokens"
    assert set(result["metrics"]) == {"loss", "acc", "perplexity", "bpc"}  # characters: bits per character
    final = lm_run.summary["final"]
    for key, value in result["metrics"].items():  # the same validation split as at the last epoch
        assert value == pytest.approx(final[f"val/{key}"], rel=1e-5), key
    # every token of the 32-character windows over the last 20% of the text (one more for the last target)
    assert result["samples"] == (round(len(lm_run.text) * 0.2) - 1) // 32 * 32
    assert "confusion" not in result


# ---------------------------------------------------------------- truncated BPTT and exact resume

TBPTT_STEPS_PER_EPOCH = 15  # 124 training windows in 8 streams: 15 batches, the remaining 4 dropped


@pytest.fixture(scope="module")
def tbptt_run(corpus_file, tmp_path_factory):
    """An uninterrupted 4-epoch TBPTT run that keeps a checkpoint every 7 steps."""
    root = tmp_path_factory.mktemp("tbptt")
    config = lm_config(corpus_file, epochs=4, tbptt=True, checkpoint_every={"steps": 7}, keep_last=100)
    summary = fit(config, root, "full")
    return SimpleNamespace(summary=summary, config=config, run=Path(summary["run_dir"]), root=root)


def test_tbptt_trains_and_reports_a_finite_low_perplexity(tbptt_run):
    summary = tbptt_run.summary
    assert summary["status"] == "finished" and summary["steps"] == 4 * TBPTT_STEPS_PER_EPOCH, summary
    perplexity = summary["final"]["val/perplexity"]
    assert math.isfinite(perplexity) and perplexity < 2.0, summary["final"]  # measured 1.21
    assert summary["final"]["train/perplexity"] < 3.0

    # eval walks the validation windows in the same streams, carrying the state: the same numbers
    result = evaluate_checkpoint(summary["checkpoints"]["last"], "val", [], "cpu")
    for key, value in result["metrics"].items():
        assert value == pytest.approx(summary["final"][f"val/{key}"], rel=1e-5), key
    # all 31 validation windows: 3 per stream x 8 streams, then the 7 left over as one row
    assert result["samples"] == 31 * 32


@pytest.mark.parametrize("streams", [8, 5])
def test_tbptt_eval_scores_every_window_as_continuous_streams(tbptt_run, streams):
    """eval honours data.eval_batch_size (the number of streams), and the windows left over after the
    streams continue the last stream's state: the loss equals running each stream through the model
    in one piece from a zero state."""
    import torch
    import torch.nn.functional as F

    from dlcli.data.pipeline import split_for_eval
    from dlcli.tasks import task_class
    from dlcli.training.build import from_checkpoint

    ckpt = tbptt_run.summary["checkpoints"]["last"]
    override = [f"data.eval_batch_size={streams}"]
    result = evaluate_checkpoint(ckpt, "val", override, "cpu")
    config, meta, model, device, _ = from_checkpoint(checkpoint.load(ckpt), override, "cpu")
    batches = list(split_for_eval(config, meta, "val", device, task_class("language_model")))
    *parallel, tail = batches
    assert [b.x.shape[0] for b in parallel] == [streams] * (31 // streams) and tail.x.shape[0] == 1
    pieces = [torch.cat([b.x[row] for b in parallel]) for row in range(streams)]
    targets = [torch.cat([b.y[row] for b in parallel]) for row in range(streams)]
    pieces[-1], targets[-1] = torch.cat([pieces[-1], tail.x[0]]), torch.cat([targets[-1], tail.y[0]])
    model.eval()
    with torch.no_grad():
        total = sum(float(F.cross_entropy(model(x[None])[0], y, reduction="sum")) for x, y in zip(pieces, targets))
    assert result["samples"] == 31 * 32
    assert result["metrics"]["loss"] == pytest.approx(total / (31 * 32), rel=1e-5)


def resume_copy(tbptt_run, name: str, step: int) -> dict:
    """Copy the run, then resume the copy from its mid-epoch checkpoint at `step` (in this process)."""
    run = tbptt_run.root / name
    shutil.copytree(tbptt_run.run, run)
    cfg = validate(tbptt_run.config)
    summary = train(cfg, str(tbptt_run.root), None, Progress(4, quiet=True, stream=io.StringIO()),
                    resume=str(run / "checkpoints" / f"step-{step:09d}.pt"))
    assert summary["run_dir"] == str(run.resolve()) and summary["status"] == "finished", summary
    return summary


def test_tbptt_resumed_mid_epoch_ends_with_the_uninterrupted_weights(tbptt_run, monkeypatch):
    import torch

    step = TBPTT_STEPS_PER_EPOCH + 6  # epoch 2, batch 6
    saved = checkpoint.load(tbptt_run.run / "checkpoints" / f"step-{step:09d}.pt")
    assert saved["state"]["epoch"] == 2 and saved["position"]["batch_in_epoch"] == 6
    h, c = saved["position"]["task"]["state"]  # the LSTM's carried (h, c): layers x streams x hidden
    assert h.shape == c.shape == (1, 8, 64) and torch.count_nonzero(h) > 0

    full = checkpoint.load(tbptt_run.run / "checkpoints" / "last.pt")
    summary = resume_copy(tbptt_run, "resumed", step)
    resumed = checkpoint.load(Path(summary["checkpoints"]["last"]))
    assert resumed["state"] | {"seconds": 0} == full["state"] | {"seconds": 0}  # all but the wall time
    assert same_tensors(resumed["model"], full["model"]), "weights differ after a mid-epoch TBPTT resume"
    for i, state in full["optimizer"]["state"].items():
        assert same_tensors(state, resumed["optimizer"]["state"][i]), i
    assert summary["final"] == tbptt_run.summary["final"]
    assert records(Path(summary["run_dir"])) == records(tbptt_run.run)

    # control: dropping the carried hidden state on resume changes the outcome, so the check has teeth
    from dlcli.tasks.language_model import LanguageModelTask

    monkeypatch.setattr(LanguageModelTask, "load_state_dict", lambda self, state: None)
    stateless = resume_copy(tbptt_run, "stateless", step)
    assert not same_tensors(weights(stateless["checkpoints"]["last"]), full["model"])


# ---------------------------------------------------------------- forecasting

WINDOW, HORIZON = 24, 4


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sine")
    dataset = {"name": "sine", "length": 1200, "period": 40, "noise": 0.05, "window": WINDOW, "horizon": HORIZON}
    summary = fit(train_config("sine", dataset, {"embedding_dim": 16, "hidden_size": 32}, 5, "val/mae",
                               grad_clip={"max_norm": 1.0}), root)
    return SimpleNamespace(summary=summary, ckpt=summary["checkpoints"]["last"], root=root)


def test_forecaster_beats_repeating_the_last_value(sine_run):
    final = sine_run.summary["final"]
    assert set(final) == {"train/loss", "val/loss", "val/mae", "val/rmse", "val/naive_mae", "lr"}
    # measured: mae 0.06 against naive 0.25 (data units: a unit-amplitude sine with noise 0.05)
    assert final["val/mae"] < 0.7 * final["val/naive_mae"], final
    assert final["val/mae"] < 0.15 and final["val/mae"] <= final["val/rmse"] < 0.2, final
    assert 0.15 < final["val/naive_mae"] < 0.4, final  # in data units, not normalised ones


def test_eval_reports_mae_and_rmse_for_the_forecaster(sine_run):
    val = evaluate_checkpoint(sine_run.ckpt, "val", [], "cpu")
    assert val["task"] == "forecasting" and val["unit"] == "windows"
    assert set(val["metrics"]) == {"loss", "mae", "rmse", "naive_mae"}
    assert val["samples"] == 240 - WINDOW - HORIZON + 1  # every window of the last 20% of 1,200 values
    for key, value in val["metrics"].items():
        assert value == pytest.approx(sine_run.summary["final"][f"val/{key}"], rel=1e-5), key
    test = evaluate_checkpoint(sine_run.ckpt, "test", [], "cpu")  # a fresh draw of the wave
    assert test["samples"] == 1200 - WINDOW - HORIZON + 1
    assert test["metrics"]["mae"] < 0.7 * test["metrics"]["naive_mae"], test["metrics"]


def write_series(path: Path, columns: dict) -> Path:
    names = list(columns)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows(zip(*columns.values()))
    return path


def test_infer_forecasts_more_steps_than_the_horizon_close_to_the_true_continuation(sine_run, tmp_path):
    n, steps = 100, 12
    wave = [math.sin(2 * math.pi * t / 40 + 1.0) for t in range(n + steps)]
    series = write_series(tmp_path / "series.csv", {"value": wave[:n]})

    result = cli("infer", sine_run.ckpt, series, "--steps", steps, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["step"] for r in rows] == list(range(1, steps + 1)) and all(set(r) == {"step", "value"} for r in rows)
    errors = [abs(r["value"] - wave[n + i]) for i, r in enumerate(rows)]
    assert max(errors) < 0.3, errors  # measured 0.11 over 12 steps, fed back 3 times

    default = cli("infer", sine_run.ckpt, series, "--json", "--device", "cpu")
    assert default.exit_code == 0, default.stderr
    assert json.loads(default.stdout) == rows[:HORIZON]  # default: one horizon, the same first forecast

    out = tmp_path / "forecast.csv"
    written = cli("infer", sine_run.ckpt, series, "--steps", 6, "--output", out, "--device", "cpu")
    assert written.exit_code == 0, written.stderr
    with out.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [float(r["value"]) for r in table] == pytest.approx([r["value"] for r in rows[:6]])


def test_forecaster_input_misuse_is_a_clean_error(sine_run, tmp_path):
    series = write_series(tmp_path / "s.csv", {"value": [0.1 * i for i in range(50)]})
    short = write_series(tmp_path / "short.csv", {"value": [0.0] * (WINDOW - 1)})
    other = write_series(tmp_path / "other.csv", {"level": [0.0] * 50})

    r = cli("infer", sine_run.ckpt, series, series, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 2, "one CSV series", "got 2 inputs")
    r = cli("infer", sine_run.ckpt, short, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 3, f"{WINDOW - 1} rows", f"last {WINDOW}")
    r = cli("infer", sine_run.ckpt, other, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 3, "missing column", "value")


@pytest.fixture(scope="module")
def multi_column_series(tmp_path_factory):
    """A CSV with a date column and two numeric ones; a model that reads both and forecasts only `a`."""
    folder = tmp_path_factory.mktemp("series")
    n = 300
    path = write_series(folder / "two.csv", {
        "date": [f"2024-01-{1 + i % 28:02d}" for i in range(n)],
        "a": [round(math.sin(t / 5), 5) for t in range(n)],
        "b": [round(math.cos(t / 5), 5) for t in range(n)],
    })
    dataset = {"name": "timeseries", "path": str(path), "window": 8, "horizon": 2}
    config = train_config("ts", {**dataset, "columns": ["a", "b"], "targets": ["a"]},
                          {"embedding_dim": 8, "hidden_size": 16}, 1, "val/mae")
    summary = fit(config, folder / "runs")
    return SimpleNamespace(path=path, dataset=dataset, ckpt=summary["checkpoints"]["last"], folder=folder)


def test_steps_beyond_the_horizon_need_a_model_that_forecasts_every_column(multi_column_series):
    data = multi_column_series
    r = cli("infer", data.ckpt, data.path, "--steps", 5, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 2, "--steps", "at most 2", "every input column")
    ok = cli("infer", data.ckpt, data.path, "--steps", 2, "--json", "--device", "cpu")
    assert ok.exit_code == 0, ok.stderr
    rows = json.loads(ok.stdout)
    assert [sorted(r) for r in rows] == [["a", "step"], ["a", "step"]]
    assert all(abs(r["a"]) < 1.5 for r in rows)  # denormalised: the scale of the data


def test_a_non_numeric_series_column_is_a_data_error_naming_it(multi_column_series, write_config, tmp_path):
    data = multi_column_series
    cfg = write_config(train_config("ts_bad", data.dataset, {"hidden_size": 8}, 1, "val/mae"))
    r = cli("train", cfg, "--output-dir", tmp_path / "runs", "-q")
    assert_one_error(r.exit_code, r.stderr, 3, f"{data.path}:2", "column 'date'", "not a number",
                     "data.dataset.columns")
    assert not (tmp_path / "runs").exists()  # nothing written for a data error


# ---------------------------------------------------------------- text classification

POSITIVE, NEGATIVE = ["good", "great", "lovely", "excellent"], ["bad", "awful", "terrible", "poor"]
FILLER = "the a movie film was it and plot acting really quite very".split()


def sentiment_csv(path: Path, rows: int = 400, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            label = rng.choice(["pos", "neg"])
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
            words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
            writer.writerow([" ".join(words), label])
    return path


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentiment")
    dataset = {"name": "text_classification", "path": str(sentiment_csv(folder / "reviews.csv"))}
    config = train_config("sentiment", dataset, {"embedding_dim": 16, "hidden_size": 32, "pooling": "max"}, 5,
                          "val/acc")
    config["data"]["val_split"] = 0.25
    summary = fit(config, folder / "runs")
    return SimpleNamespace(summary=summary, ckpt=summary["checkpoints"]["last"], folder=folder)


def test_text_classifier_reaches_high_validation_accuracy(sentiment_run):
    final = sentiment_run.summary["final"]
    assert final["val/acc"] >= 0.9 and final["val/f1"] >= 0.9, final  # measured 1.0

    result = evaluate_checkpoint(sentiment_run.ckpt, "val", [], "cpu")
    assert result["unit"] == "samples" and result["samples"] == 100
    assert set(result["metrics"]) == {"loss", "acc", "f1"}  # two classes: no top-5
    assert result["metrics"]["acc"] == pytest.approx(final["val/acc"])
    assert result["metrics"]["f1"] == pytest.approx(final["val/f1"])
    assert result["class_names"] == ["neg", "pos"] and sum(map(sum, result["confusion"])) == 100


def test_infer_classifies_text_options_and_jsonl_rows(sentiment_run, tmp_path):
    inputs = tmp_path / "new.jsonl"
    inputs.write_text('{"text": "what a great film"}\n\n{"text": "the plot was awful", "id": 2}\n')
    r = cli("infer", sentiment_run.ckpt, inputs, "--text", "a lovely movie", "--text", "really terrible acting",
            "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["input"] for row in rows] == ["--text 1", "--text 2", f"{inputs}:1", f"{inputs}:2"]
    assert [row["class"] for row in rows] == ["pos", "neg", "pos", "neg"]
    for row in rows:
        assert row["probability"] > 0.5 and row["top_k"][0]["class"] == row["class"] and len(row["top_k"]) == 2


def test_text_classifier_input_misuse_is_a_clean_error(sentiment_run, tmp_path):
    plain = tmp_path / "review.txt"
    plain.write_text("a great film\n")
    r = cli("infer", sentiment_run.ckpt, plain, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 3, "review.txt", ".csv/.jsonl", "'text' column")
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"review": "a great film"}\n')
    r = cli("infer", sentiment_run.ckpt, wrong, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 3, "wrong.jsonl:1", "missing column 'text'")
    r = cli("infer", sentiment_run.ckpt, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 2, "no inputs")


# ---------------------------------------------------------------- bad input through the CLI


def test_an_empty_text_file_is_exit_3_in_a_real_process(run_cli, write_config, tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n")
    cfg = write_config(lm_config(Path("empty.txt"), epochs=1))
    result = run_cli("train", cfg, "--output-dir", tmp_path / "runs", "-q", env=ONE_THREAD)
    assert_one_error(result.returncode, result.stderr, 3, "empty.txt", "the text file is empty")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("chars, seq_len, part", [(50, 64, "training text (40 tokens)"),  # val_split 0.2
                                                   (300, 64, "validation text (60 tokens)")])
def test_seq_len_longer_than_the_text_is_exit_3(write_config, tmp_path, chars, seq_len, part):
    text = tmp_path / "short.txt"
    text.write_text(grammar_corpus(20)[:chars])
    config = lm_config(text, epochs=1)
    config["data"]["dataset"]["seq_len"] = seq_len
    r = cli("train", write_config(config), "--output-dir", tmp_path / "runs", "-q")
    error = assert_one_error(r.exit_code, r.stderr, 3, "data.dataset.seq_len", part, "lower seq_len")
    assert ("data.val_split" in error) == part.startswith("validation")
    assert not (tmp_path / "runs").exists()


def test_language_model_misuse_is_a_clean_error_and_a_prompt_works(lm_run, corpus_file):
    r = cli("infer", lm_run.ckpt, corpus_file, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 2, "language model takes no input files", "--prompt")
    r = cli("infer", lm_run.ckpt, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 2, "--prompt", "at least one token")
    r = cli("eval", lm_run.ckpt, "--device", "cpu")  # the default test split needs data.dataset.test_path
    assert_one_error(r.exit_code, r.stderr, 3, "no test split", "test_path", "--split val")

    ok = cli("infer", lm_run.ckpt, "--prompt", "the dog", "--length", 30, "--seed", 5, "--temperature", 0.8,
             "--device", "cpu")
    assert ok.exit_code == 0, ok.stderr
    text = ok.stdout.rstrip("\n")
    assert text.startswith("the dog") and len(text) == len("the dog") + 30
    assert text[len("the dog"):] == generate(lm_run.ckpt, 5, prompt="the dog", length=30, temperature=0.8)["generated"]


def latin1_files(folder: Path) -> dict:
    """An Excel-style latin-1 export: a series with an accented header, and labelled texts."""
    series = folder / "latin1_series.csv"
    series.write_bytes(("temp\xe9rature\n" + "".join(f"{math.sin(t / 4):.4f}\n" for t in range(120))).encode("latin-1"))
    texts = folder / "latin1_reviews.csv"
    texts.write_bytes(("text,label\n" + "un caf\xe9 great,pos\nun caf\xe9 awful,neg\n" * 30).encode("latin-1"))
    return {"timeseries": series, "text_classification": texts}


@pytest.mark.parametrize("dataset", ["timeseries", "text_classification"])
def test_training_on_a_file_that_is_not_utf8_is_a_data_error(write_config, tmp_path, dataset):
    path = latin1_files(tmp_path)[dataset]
    monitor = "val/mae" if dataset == "timeseries" else "val/acc"
    cfg = write_config(train_config("latin", {"name": dataset, "path": str(path)}, {"hidden_size": 8}, 1, monitor))
    r = cli("train", cfg, "--output-dir", tmp_path / "runs", "-q")
    assert_one_error(r.exit_code, r.stderr, 3, path.name)


@pytest.mark.parametrize("run, dataset", [("sine_run", "timeseries"), ("sentiment_run", "text_classification")])
def test_infer_on_a_file_that_is_not_utf8_is_a_data_error(request, tmp_path, run, dataset):
    path = latin1_files(tmp_path)[dataset]
    if dataset == "timeseries":  # the sine model reads the column `value`; another column has an accent
        rows = "".join(f"{math.sin(t / 4):.4f},20.5\n" for t in range(60))
        path.write_bytes(f"value,temp\xe9rature\n{rows}".encode("latin-1"))
    r = cli("infer", request.getfixturevalue(run).ckpt, path, "--device", "cpu")
    assert_one_error(r.exit_code, r.stderr, 3, path.name)


# ---------------------------------------------------------------- the shipped configs


@pytest.mark.parametrize("name, task", [("lstm_digits", "classification"), ("lstm_sine", "forecasting"),
                                        ("lstm_text", "language_model")])
def test_shipped_lstm_configs_validate(name, task):
    result = subprocess.run([sys.executable, "-m", "dlcli", "validate", REPO / "configs" / f"{name}.yaml"],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["name"] == name and resolved["task"] == task and resolved["model"]["name"] == "lstm"


def test_lstm_digits_trains_two_epochs_past_half_accuracy(tmp_path):
    cfg = load(str(REPO / "configs" / "lstm_digits.yaml"), ["train.epochs=2", "train.device=cpu"])
    summary = train(cfg, str(tmp_path / "runs"), None, Progress(2, quiet=True, stream=io.StringIO()))
    assert summary["status"] == "finished" and summary["epochs"] == 2, summary
    assert summary["final"]["val/acc"] > 0.5, summary["final"]  # measured 0.59 (10 classes: chance is 0.1)

    result = evaluate_checkpoint(summary["checkpoints"]["last"], "test", [], "cpu")
    assert result["task"] == "classification" and result["samples"] == 360
    assert set(result["metrics"]) == {"loss", "acc", "f1", "top5"} and result["metrics"]["acc"] > 0.4
    kind, rows = infer(summary["checkpoints"]["last"], [str(REPO / "examples" / "digits")], "cpu", 3)
    assert kind == "classes" and len(rows) == 10
    assert all(row["class"] in [str(d) for d in range(10)] and len(row["top_k"]) == 3 for row in rows)
