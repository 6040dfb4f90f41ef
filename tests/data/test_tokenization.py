"""Levels whitespace and bpe (issue 18): the PyTorch word_language_model example's tokens with <eos>
at line ends; a byte-level BPE tokenizer (Hugging Face tokenizers) learnt from the training split
only, kept in the checkpoint as its JSON and used by infer (a checkpoint with another tokenizer
reads the same prompt as other ids)."""

import io
import random

import pytest

from dlcli.cli.progress import Progress
from dlcli.config import validate
from dlcli.data import subwords
from dlcli.data.codec import ids_text, text_ids
from dlcli.data.text import EOS, detokenize, tokenize
from dlcli.inference.predict import infer
from dlcli.training import checkpoint
from dlcli.training.session import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LINES = "the cat sat  on the mat .\n\n a dog , ran\nend of text\n"


def test_whitespace_level_is_the_pytorch_example_tokens_with_eos_at_each_line_end():
    # word_language_model/data.py: for line in f: words = line.split() + ['<eos>']
    expected = [w for line in LINES.splitlines() for w in line.split() + ["<eos>"]]
    assert tokenize(LINES, "whitespace") == expected
    assert tokenize("The Cat", "whitespace", lowercase=True) == ["the", "cat"]  # no newline: no <eos>
    assert detokenize(expected, "whitespace") == "the cat sat on the mat .\n\na dog , ran\nend of text\n"
    assert tokenize(detokenize(expected, "whitespace"), "whitespace") == expected  # round trip
    vocab = ["<pad>", "<unk>", EOS, "the", "cat"]
    assert text_ids("the cat\nthe dog", {"level": "whitespace"}, vocab) == ([3, 4, 2, 3, 1], ["dog"])


def corpus(sentences: int = 300, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "lambda", "sigma"]
    return "".join(" ".join(rng.choice(words) for _ in range(6)) + ".\n" for _ in range(sentences))


def test_bpe_round_trips_any_text_and_keeps_pad_and_unk_at_0_and_1():
    spec = subwords.train_bpe([corpus()], 300, lowercase=False, min_freq=2)
    vocab = subwords.vocabulary(spec)
    assert vocab[:2] == ["<pad>", "<unk>"] and len(vocab) <= 300
    sequence = {"level": "bpe", "tokenizer": spec}
    for text in ("alpha beta.\ngamma", "Ünïcode ☃ and words never seen", ""):
        ids, unknown = text_ids(text, sequence, vocab)
        assert ids_text(ids, sequence, vocab) == text and unknown == []
        assert all(i >= 2 for i in ids)  # bytes, never <unk>
    assert len(text_ids("alpha beta gamma", sequence, vocab)[0]) < len("alpha beta gamma") / 2  # merged words


def lm_config(path, **dataset) -> dict:
    return {"name": "bpe", "seed": 0, "task": "language_model",
            "data": {"dataset": {"name": "text", "path": str(path), "seq_len": 16, "level": "bpe",
                                 "vocab_size": 300, **dataset}, "val_split": 0.2, "batch_size": 16},
            "model": {"name": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1},
            "optimizer": {"name": "adamw", "lr": 0.01},
            "train": {"epochs": 1, "device": "cpu", "log_interval": 1000}}


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    path = folder / "corpus.txt"
    text = corpus()
    path.write_text(text + "zyzzyva zyzzyva zyzzyva.\n" * 30)  # only in the last 20%: validation
    cfg = validate(lm_config(path))
    return train(cfg, str(folder / "runs"), None, Progress(1, quiet=True, stream=io.StringIO()))


def test_bpe_tokenizer_is_learnt_from_the_training_split_and_kept_in_the_checkpoint(bpe_run):
    payload = checkpoint.load(bpe_run["checkpoints"]["last"])
    sequence, vocab = payload["meta"]["sequence"], payload["meta"]["vocab"]
    assert sequence["level"] == "bpe" and vocab == subwords.vocabulary(sequence["tokenizer"])
    assert payload["model"]["embed.weight"].shape[0] == len(vocab)
    assert not any("zy" in token for token in vocab)  # no merge of validation-only text
    assert any(token.endswith("alpha") for token in vocab)  # training words became tokens


def test_infer_encodes_with_the_checkpoints_own_tokenizer(bpe_run, tmp_path):
    ckpt = bpe_run["checkpoints"]["last"]

    def prompt_ids(path):
        kind, result = infer(str(path), [], "cpu", None, {"prompt": "alpha beta gamma", "length": 5, "seed": 0})
        return result["prompt_ids"], result

    payload = checkpoint.load(ckpt)
    ids, result = prompt_ids(ckpt)
    assert ids == subwords.encode(payload["meta"]["sequence"]["tokenizer"], "alpha beta gamma")
    assert result["text"].startswith("alpha beta gamma") and len(result["generated"]) > 0

    # the same checkpoint with nothing changed but its tokenizer (a smaller one, learnt on other text)
    other = subwords.train_bpe(["alphabet betamax gammaray " * 50], 270, lowercase=False, min_freq=2)
    payload["meta"]["sequence"]["tokenizer"] = other
    swapped = tmp_path / "swapped.pt"
    checkpoint.save(payload, swapped)
    new_ids, _ = prompt_ids(swapped)
    assert new_ids != ids and new_ids == subwords.encode(other, "alpha beta gamma")


def test_vocab_size_and_max_vocab_belong_to_their_levels():
    config = lm_config("x.txt", level="word")
    with pytest.raises(Exception, match="data.dataset.vocab_size: only for level bpe"):
        validate(config)
    with pytest.raises(Exception, match="data.dataset.max_vocab: level bpe sizes"):
        validate(lm_config("x.txt", max_vocab=100))
    with pytest.raises(Exception, match="data.dataset.vocab_size"):
        validate(lm_config("x.txt", vocab_size=10))  # below the 256 bytes + specials


def test_eval_encodes_the_validation_text_with_the_checkpoints_tokenizer(bpe_run):
    from dlcli.inference.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(bpe_run["checkpoints"]["last"], "val", [], "cpu")
    assert set(result["metrics"]) == {"loss", "acc", "perplexity"}  # subwords: no bits per character
    for key, value in result["metrics"].items():  # the validation split as training encoded it
        assert value == pytest.approx(bpe_run["final"][f"val/{key}"], rel=1e-5), key


def test_a_whitespace_language_model_trains_and_generates_lines(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text(corpus(200))
    config = lm_config(path, level="whitespace")
    del config["data"]["dataset"]["vocab_size"]
    summary = train(validate(config), str(tmp_path / "runs"), None, Progress(1, quiet=True, stream=io.StringIO()))
    vocab = checkpoint.load(summary["checkpoints"]["last"])["meta"]["vocab"]
    assert EOS in vocab and "alpha" in vocab and "alpha." in vocab  # split on whitespace only, not punctuation
    _, result = infer(summary["checkpoints"]["last"], [], "cpu", None, {"prompt": "alpha beta", "length": 40, "seed": 0})
    assert "\n" in result["generated"] and result["text"].startswith("alpha beta ")
