"""Sequence datasets (issue #4): text (language modelling), text_classification, timeseries, digits_rows,
mnist_rows; their positional split, vocabulary/statistics from the training part, windowing, padding,
stream order for truncated BPTT, and the config-time checks that tie task, dataset, model and loss.

Everything runs in-process on tiny files written into tmp_path, through the same `train_batches` /
`split_for_eval` path that `dlcli train` / `dlcli eval` use.
"""

import csv
import json

import pytest
import torch

from dlcli.config import validate
from dlcli.data.datasets import DATASETS
from dlcli.data.loading import Batch, TensorBatches, trimmed
from dlcli.data.pipeline import split_for_eval, train_batches
from dlcli.data.text import PAD, UNK, build_vocab, encode, read_text, tokenize
from dlcli.data.windows import lm_windows, pad_texts, series_windows, split_positional, stream_order
from dlcli.errors import ConfigError, DataError
from dlcli.tasks import task_class

CPU = torch.device("cpu")


# ---------------------------------------------------------------- helpers


def seq_config(dataset: dict, val_split: float = 0.0, batch_size: int = 4, model: dict | None = None,
               train: dict | None = None, **top) -> dict:
    """A raw config for a sequence dataset: tiny LSTM, CPU, no shuffling (batches in data order)."""
    return {
        "name": "seq",
        "seed": 0,
        "data": {"dataset": dataset, "val_split": val_split, "batch_size": batch_size, "shuffle": False},
        "model": model or {"name": "lstm", "embedding_dim": 4, "hidden_size": 4},
        "train": {"device": "cpu", "monitor": "val/loss" if val_split else "train/loss", **(train or {})},
        **top,
    }


def batches_for(dataset: dict, **kwargs):
    """(config, train batches, val batches or None, meta) through the training pipeline."""
    config = validate(seq_config(dataset, **kwargs))
    train_b, val_b, meta = train_batches(config, CPU, torch.Generator().manual_seed(0), task_class(config.task))
    return config, train_b, val_b, meta


def write_text(tmp_path, text: str, name: str = "corpus.txt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def write_csv(path, header, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def decode(ids, vocab) -> str:
    return "".join(vocab[int(i)] for i in ids)


# ---------------------------------------------------------------- text: tokenising and vocabulary


def test_tokenize_char_and_word_levels():
    assert tokenize("Hi, yo!", "char") == ["H", "i", ",", " ", "y", "o", "!"]
    assert tokenize("Hello, world! It's 2 AM.", "word") == \
        ["Hello", ",", "world", "!", "It", "'", "s", "2", "AM", "."]
    assert tokenize("Hello World", "word", lowercase=True) == ["hello", "world"]
    assert tokenize("AbC", "char", lowercase=True) == ["a", "b", "c"]


def test_build_vocab_pad_unk_then_by_frequency_and_encode_maps_unknown_to_1():
    vocab = build_vocab([list("abbccc"), list("cd")], min_freq=1)
    assert vocab[:2] == [PAD, UNK] == ["<pad>", "<unk>"]
    assert vocab[2:] == ["c", "b", "a", "d"]  # falling frequency, ties in first-seen order
    assert build_vocab([list("abbccc")], min_freq=2) == [PAD, UNK, "c", "b"]
    assert build_vocab([list("abbccc")], max_size=1) == [PAD, UNK, "c"]
    index = {t: i for i, t in enumerate(vocab)}
    assert encode(list("cz"), index) == [2, 1]


def test_text_char_level_split_is_positional_and_vocab_comes_from_training_part(tmp_path):
    # 40 characters, val_split 0.25: the first 30 train, the last 10 validate. 'Z' only occurs in the
    # validation part, so it is not in the vocabulary and encodes as <unk> (1).
    text = "abcabcabcabcabcabcabcabcabcabc" + "abcZabcZab"
    assert len(text) == 40
    path = write_text(tmp_path, text)
    _, train_b, val_b, meta = batches_for({"name": "text", "path": path, "level": "char", "seq_len": 4},
                                          val_split=0.25, batch_size=2)
    assert meta.kind == "tokens"
    assert meta.vocab == ["<pad>", "<unk>", "a", "b", "c"]
    assert "Z" not in meta.vocab
    assert meta.input_shape == [4]
    # training windows decode to the first 30 characters, in order (stride defaults to seq_len)
    train_text = "".join(decode(row, meta.vocab) for row in train_b.x)
    assert train_text == text[:len(train_text)] and len(train_text) == 28  # 7 windows of 4 from 29 inputs
    # validation windows come from the last 10 characters; 'Z' became <unk>
    val_ids = encode(list(text[30:]), {t: i for i, t in enumerate(meta.vocab)})
    assert val_ids == [2, 3, 4, 1, 2, 3, 4, 1, 2, 3]
    assert val_b.x.tolist() == [val_ids[0:4], val_ids[4:8]]
    assert val_b.y.tolist() == [val_ids[1:5], val_ids[5:9]]
    assert (val_b.x == 1).sum() == 2


def test_text_word_level_with_lowercase(tmp_path):
    path = write_text(tmp_path, "The cat sat. the CAT sat, The end.")
    _, train_b, _, meta = batches_for({"name": "text", "path": path, "level": "word", "lowercase": True,
                                       "seq_len": 3})
    # words and punctuation marks are tokens; lowercase merges The/the and cat/CAT
    assert meta.vocab[:2] == ["<pad>", "<unk>"]
    assert set(meta.vocab[2:]) == {"the", "cat", "sat", ".", ",", "end"}
    assert meta.vocab[2] == "the"  # the most frequent token (3 times) comes first
    words = [meta.vocab[i] for i in train_b.x[0].tolist()]
    assert words == ["the", "cat", "sat"]
    assert meta.sequence["level"] == "word" and meta.sequence["lowercase"] is True


def test_text_positional_split_takes_the_last_part_for_validation():
    from dlcli.data.source import Source

    pool = Source(y=None, class_names=[], kind="tokens", stream=list(range(20)), options={})
    train, val = split_positional(pool, 0.25)
    assert train.stream == list(range(15)) and val.stream == list(range(15, 20))
    train, val = split_positional(pool, 0.0)
    assert train.stream == list(range(20)) and val is None


def test_lm_windows_targets_are_inputs_shifted_by_one_and_stride_steps_the_start():
    ids = list(range(10, 20))  # 10 tokens
    x, y = lm_windows(ids, 4, 4, "training")
    assert x.tolist() == [[10, 11, 12, 13], [14, 15, 16, 17]]
    assert y.tolist() == [[11, 12, 13, 14], [15, 16, 17, 18]]
    assert torch.equal(x[:, 1:], y[:, :-1])
    x, y = lm_windows(ids, 4, 2, "training")  # overlapping windows every 2 tokens
    assert x.tolist() == [[10, 11, 12, 13], [12, 13, 14, 15], [14, 15, 16, 17]]
    assert torch.equal(y, x + 1)
    x, y = lm_windows(ids, 3, 1, "training")
    assert x.shape == (7, 3) and x[:, 0].tolist() == list(range(10, 17))
    assert x.dtype == y.dtype == torch.long


def test_text_stride_from_config(tmp_path):
    path = write_text(tmp_path, "abcdefghijklmnopqrstu")  # 21 chars: 20 inputs
    _, train_b, _, meta = batches_for({"name": "text", "path": path, "seq_len": 6, "stride": 3})
    assert meta.sequence["stride"] == 3
    rows = [decode(r, meta.vocab) for r in train_b.x]
    assert rows == ["abcdef", "defghi", "ghijkl", "jklmno", "mnopqr"]
    assert [decode(r, meta.vocab) for r in train_b.y] == ["bcdefg", "efghij", "hijklm", "klmnop", "nopqrs"]


# ---------------------------------------------------------------- text: errors


def test_text_empty_file_is_a_data_error(tmp_path):
    path = write_text(tmp_path, "  \n\n  ")
    with pytest.raises(DataError, match="empty") as info:
        DATASETS.build({"name": "text", "path": path}, "train")
    assert "corpus.txt" in str(info.value)
    assert info.value.exit_code == 3


def test_text_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        read_text(str(tmp_path / "missing.txt"))
    assert "missing.txt" in str(info.value)
    with pytest.raises(DataError, match="missing.txt"):
        batches_for({"name": "text", "path": str(tmp_path / "missing.txt")})


def test_text_test_split_without_test_path_names_the_setting(tmp_path):
    path = write_text(tmp_path, "abc" * 10)
    with pytest.raises(DataError, match="test_path"):
        DATASETS.build({"name": "text", "path": path}, "test")


def test_text_not_utf8_names_the_encoding_setting(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(DataError, match="data.dataset.encoding"):
        DATASETS.build({"name": "text", "path": str(path)}, "train")
    source = DATASETS.build({"name": "text", "path": str(path), "encoding": "latin-1"}, "train")
    assert "\u00e9" in source.stream


def test_seq_len_longer_than_the_training_text(tmp_path):
    path = write_text(tmp_path, "abcdefghij")  # 10 tokens
    with pytest.raises(DataError) as info:
        batches_for({"name": "text", "path": path, "seq_len": 10})
    message = str(info.value)
    assert "data.dataset.seq_len" in message and "training" in message and "10 tokens" in message
    assert "lower seq_len" in message and "val_split" not in message


def test_seq_len_longer_than_the_validation_text(tmp_path):
    path = write_text(tmp_path, "ab" * 20)  # 40 tokens: 36 train, 4 validation
    with pytest.raises(DataError) as info:
        batches_for({"name": "text", "path": path, "seq_len": 8}, val_split=0.1)
    message = str(info.value)
    assert "data.dataset.seq_len" in message and "validation" in message and "4 tokens" in message
    assert "data.val_split" in message


# ---------------------------------------------------------------- text: eval split reuses the training vocabulary


def test_text_test_file_is_encoded_with_the_training_vocabulary(tmp_path):
    train_path = write_text(tmp_path, "abcabcabcabc", "train.txt")
    test_path = write_text(tmp_path, "abXYabca", "test.txt")
    config, _, _, meta = batches_for({"name": "text", "path": train_path, "test_path": test_path, "seq_len": 3})
    test_b = split_for_eval(config, meta, "test", CPU, task_class(config.task))
    x = torch.cat([b.x for b in test_b])
    y = torch.cat([b.y for b in test_b])
    assert meta.vocab == ["<pad>", "<unk>", "a", "b", "c"]
    assert x.tolist() == [[2, 3, 1], [1, 2, 3]]  # X and Y are unseen: <unk>
    assert y.tolist() == [[3, 1, 1], [2, 3, 4]]


def test_seq_len_longer_than_the_test_text_does_not_suggest_val_split(tmp_path):
    train_path = write_text(tmp_path, "abcdefgh" * 5, "train.txt")
    test_path = write_text(tmp_path, "abc", "test.txt")
    config, _, _, meta = batches_for({"name": "text", "path": train_path, "test_path": test_path, "seq_len": 4})
    with pytest.raises(DataError) as info:
        split_for_eval(config, meta, "test", CPU, task_class(config.task))
    message = str(info.value)
    assert "test split" in message and "3 tokens" in message
    assert "val_split" not in message


# ---------------------------------------------------------------- timeseries


def series_rows(n: int = 20):
    """Rows of (t, 2t + 1, t^2 mod 7): three numeric columns with different statistics."""
    return [(t, 2 * t + 1, (t * t) % 7) for t in range(n)]


def test_timeseries_statistics_come_from_the_training_part_only(tmp_path):
    rows = series_rows(20)
    path = write_csv(tmp_path / "series.csv", ["a", "b", "c"], rows)
    _, train_b, val_b, meta = batches_for({"name": "timeseries", "path": path, "window": 3, "horizon": 1},
                                          val_split=0.25, batch_size=64)
    train_part = torch.tensor(rows[:15], dtype=torch.float32)  # first (1 - 0.25) of 20 rows
    assert meta.kind == "series"
    assert meta.feature_names == ["a", "b", "c"]
    assert meta.feature_mean == pytest.approx(train_part.mean(0).tolist())
    assert meta.feature_std == pytest.approx(train_part.std(0).tolist())
    everything = torch.tensor(rows, dtype=torch.float32).mean(0).tolist()
    assert meta.feature_mean != pytest.approx(everything)  # no peeking at the validation rows
    # the validation windows are normalised with the training statistics
    mean, std = train_part.mean(0), train_part.std(0)
    val_part = torch.tensor(rows[15:], dtype=torch.float32)
    assert torch.allclose(val_b.x[0], (val_part[:3] - mean) / std, atol=1e-5)
    assert torch.allclose(train_b.x[0], (train_part[:3] - mean) / std, atol=1e-5)


def test_timeseries_window_and_target_shapes(tmp_path):
    rows = series_rows(20)
    path = write_csv(tmp_path / "series.csv", ["a", "b", "c"], rows)
    _, train_b, _, meta = batches_for({"name": "timeseries", "path": path, "window": 5, "horizon": 2,
                                       "targets": ["c", "a"]}, batch_size=64)
    assert meta.input_shape == [4, 3]  # the model reads the window's 4 changes (difference: 1, the default)
    assert meta.sequence["target_index"] == [2, 0]
    assert task_class("forecasting").num_outputs(meta) == 2 * 2
    # 20 rows, window 5 + horizon 2, stride 1: 14 windows
    assert train_b.x.shape == (14, 5, 3) and train_b.y.shape == (14, 2, 2)
    values = (torch.tensor(rows, dtype=torch.float32) - torch.tensor(meta.feature_mean)) / torch.tensor(meta.feature_std)
    assert torch.allclose(train_b.x[3], values[3:8])
    assert torch.allclose(train_b.y[3], values[8:10][:, [2, 0]])  # the next 2 rows of c, a


def test_timeseries_all_columns_are_targets_by_default_and_stride(tmp_path):
    path = write_csv(tmp_path / "series.csv", ["a", "b"], [(t, -t) for t in range(12)])
    _, train_b, _, meta = batches_for({"name": "timeseries", "path": path, "window": 4, "horizon": 1,
                                       "stride": 3}, batch_size=64)
    assert meta.sequence["targets"] == ["a", "b"]
    assert train_b.x.shape == (3, 4, 2) and train_b.y.shape == (3, 1, 2)  # starts 0, 3, 6
    std_a = meta.feature_std[0]
    assert (train_b.x[1, 0, 0] - train_b.x[0, 0, 0]) * std_a == pytest.approx(3.0)


def test_timeseries_columns_select_inputs(tmp_path):
    path = write_csv(tmp_path / "series.csv", ["date", "a", "b"],
                     [(f"2024-01-{d:02d}", d, d * 10) for d in range(1, 13)])
    _, train_b, _, meta = batches_for({"name": "timeseries", "path": path, "columns": ["b"], "window": 4},
                                      batch_size=64)
    assert meta.feature_names == ["b"] and train_b.x.shape == (8, 4, 1)


def test_timeseries_non_numeric_column_names_it_and_suggests_columns(tmp_path):
    path = write_csv(tmp_path / "series.csv", ["date", "a"], [("2024-01-01", 1.0), ("2024-01-02", 2.0)])
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "timeseries", "path": path}, "train")
    message = str(info.value)
    assert "'date'" in message and "not a number" in message and "series.csv:2" in message
    assert "data.dataset.columns" in message


def test_timeseries_target_not_among_columns(tmp_path):
    path = write_csv(tmp_path / "series.csv", ["a", "b"], [(1, 2), (3, 4)])
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "timeseries", "path": path, "columns": ["a"], "targets": ["b"]}, "train")
    message = str(info.value)
    assert "data.dataset.targets" in message and "'b'" in message and "['a']" in message


def test_timeseries_missing_column_and_missing_file(tmp_path):
    path = write_csv(tmp_path / "series.csv", ["a"], [(1,), (2,)])
    with pytest.raises(DataError, match=r"missing column.*'zz'"):
        DATASETS.build({"name": "timeseries", "path": path, "columns": ["zz"]}, "train")
    with pytest.raises(DataError, match="not found"):
        DATASETS.build({"name": "timeseries", "path": str(tmp_path / "none.csv")}, "train")


def test_timeseries_window_longer_than_validation_series(tmp_path):
    path = write_csv(tmp_path / "series.csv", ["a"], [(t,) for t in range(20)])
    with pytest.raises(DataError) as info:
        batches_for({"name": "timeseries", "path": path, "window": 4, "horizon": 2}, val_split=0.2)
    message = str(info.value)
    assert "data.dataset.window" in message and "validation" in message and "4 rows" in message


def test_series_windows_direct():
    values = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2) * torch.tensor([1.0, -1.0])
    x, y = series_windows(values, {"window": 3, "horizon": 2, "stride": 2, "target_index": [1]}, "training")
    assert x.shape == (3, 3, 2) and y.shape == (3, 2, 1)
    assert x[:, 0, 0].tolist() == [0.0, 2.0, 4.0]
    assert y[0, :, 0].tolist() == [-3.0, -4.0]


# ---------------------------------------------------------------- text_classification


TEXTS = [
    ("good movie", "pos"),
    ("a truly great and moving film with a good cast", "pos"),
    ("bad", "neg"),
    ("", "neg"),
    ("awful awful plot and bad acting", "neg"),
    ("fine", "pos"),
]


def text_cls_dataset(tmp_path, fmt: str, **options) -> dict:
    if fmt == "csv":
        path = write_csv(tmp_path / "reviews.csv", ["text", "label"], TEXTS)
    else:
        path = write_jsonl(tmp_path / "reviews.jsonl", [{"text": t, "label": lab} for t, lab in TEXTS])
    return {"name": "text_classification", "path": path, **options}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_classification_pads_to_longest_truncates_and_keeps_lengths(tmp_path, fmt):
    _, train_b, _, meta = batches_for(text_cls_dataset(tmp_path, fmt, max_len=6), batch_size=64)
    assert meta.kind == "text" and meta.class_names == ["neg", "pos"]
    assert meta.input_shape == [6]
    assert isinstance(train_b, TensorBatches)
    # token counts 2, 10 (cut to 6), 1, 0 (-> one <unk>), 6, 1
    assert train_b.lengths.tolist() == [2, 6, 1, 1, 6, 1]
    assert train_b.x.shape == (6, 6) and train_b.x.dtype == torch.long
    assert train_b.y.tolist() == [1, 1, 0, 0, 0, 1]
    for row, length in zip(train_b.x, train_b.lengths.tolist()):
        assert (row[:length] > 0).all() and (row[length:] == 0).all()  # padded with <pad> (0) after the text
    assert train_b.x[3].tolist()[:1] == [1]  # the empty text is one <unk>
    words = [meta.vocab[i] for i in train_b.x[1].tolist()]
    assert words == ["a", "truly", "great", "and", "moving", "film"]  # first max_len tokens


def test_text_classification_vocab_and_lowercase_default(tmp_path):
    path = write_csv(tmp_path / "r.csv", ["text", "label"], [("Good GOOD good", 1), ("Bad!", 0)])
    _, train_b, _, meta = batches_for({"name": "text_classification", "path": path}, batch_size=64)
    assert meta.vocab == ["<pad>", "<unk>", "good", "bad", "!"]
    assert train_b.x.tolist() == [[2, 2, 2], [3, 4, 0]]
    assert meta.class_names == ["0", "1"]


def test_text_classification_batches_are_trimmed_to_their_longest_sequence(tmp_path):
    _, train_b, _, _ = batches_for(text_cls_dataset(tmp_path, "csv", max_len=20), batch_size=2)
    assert train_b.x.shape[1] == 10  # the whole split is padded to its longest text
    batches = list(train_b)
    assert [b.x.shape[1] for b in batches] == [10, 1, 6]
    for batch in batches:
        assert isinstance(batch, Batch)
        assert batch.x.shape[1] == int(batch.lengths.max())
        assert batch.lengths.shape == batch.y.shape


def test_text_classification_dataloader_path_trims_as_well(tmp_path):
    config = seq_config(text_cls_dataset(tmp_path, "jsonl", max_len=20), batch_size=2)
    config["data"]["loader"] = "dataloader"
    train_b, _, _ = train_batches(validate(config), CPU, torch.Generator().manual_seed(0), task_class("classification"))
    shapes = [(b.x.shape[1], int(b.lengths.max())) for b in train_b]
    assert shapes == [(10, 10), (1, 1), (6, 6)]


def test_trimmed_keeps_unpadded_batches_whole():
    x = torch.zeros(3, 9, dtype=torch.long)
    batch = trimmed(x, torch.zeros(3), None, torch.tensor([2, 4, 3]))
    assert batch.x.shape == (3, 4) and batch.lengths.tolist() == [2, 4, 3]
    batch = trimmed(x, torch.zeros(3), None, None)
    assert batch.x.shape == (3, 9) and batch.lengths is None


def test_pad_texts_direct():
    vocab = ["<pad>", "<unk>", "a", "b"]
    x, lengths = pad_texts([["a", "b", "a"], [], ["z"], ["b", "b", "b", "b", "b"]], vocab, max_len=4)
    assert lengths.tolist() == [3, 1, 1, 4]
    assert x.tolist() == [[2, 3, 2, 0], [1, 0, 0, 0], [1, 0, 0, 0], [3, 3, 3, 3]]


def test_text_classification_test_file_uses_training_vocab_and_classes(tmp_path):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [("good film", "pos"), ("bad film", "neg")])
    test = write_csv(tmp_path / "test.csv", ["text", "label"], [("terrible film", "neg")])
    config, _, _, meta = batches_for({"name": "text_classification", "path": train, "test_path": test},
                                     batch_size=64)
    batch = next(iter(split_for_eval(config, meta, "test", CPU, task_class(config.task))))
    assert batch.x.tolist() == [[1, meta.vocab.index("film")]]  # 'terrible' was never seen in training
    assert batch.y.tolist() == [meta.class_names.index("neg")]


def test_text_classification_custom_columns(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"body": "hi there", "y": 3}, {"body": "bye", "y": 1}])
    source = DATASETS.build({"name": "text_classification", "path": path, "text_column": "body",
                             "label_column": "y"}, "train")
    assert source.texts == [["hi", "there"], ["bye"]]
    assert source.class_names == ["1", "3"] and source.y.tolist() == [1, 0]


def test_text_classification_missing_text_column_in_csv(tmp_path):
    path = write_csv(tmp_path / "r.csv", ["review", "label"], [("good", 1)])
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "text_classification", "path": path}, "train")
    message = str(info.value)
    assert "missing column 'text'" in message and "r.csv:2" in message


def test_text_classification_missing_label_column_in_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "ok", "label": 1}, {"text": "no label"}])
    with pytest.raises(DataError, match=r"r\.jsonl:2: missing column 'label'"):
        DATASETS.build({"name": "text_classification", "path": path}, "train")


def test_text_classification_invalid_jsonl_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n\n{"text": "broken", "label": \n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "text_classification", "path": str(path)}, "train")
    message = str(info.value)
    assert "r.jsonl:3" in message and "not valid JSON" in message


def test_text_classification_missing_or_empty_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        DATASETS.build({"name": "text_classification", "path": str(tmp_path / "none.csv")}, "train")
    empty = write_csv(tmp_path / "empty.csv", ["text", "label"], [])
    with pytest.raises(DataError, match="no data rows"):
        DATASETS.build({"name": "text_classification", "path": empty}, "train")


# ---------------------------------------------------------------- image rows


def test_digits_rows_is_a_sequence_of_8_rows_of_8_pixels():
    source = DATASETS.build({"name": "digits_rows"}, "train")
    images = DATASETS.build({"name": "digits"}, "train")
    assert source.kind == "sequence"
    assert source.x.ndim == 3 and source.x.shape[1:] == (8, 8)
    assert source.x.shape[0] == len(source.y) == images.x.shape[0]
    assert torch.equal(source.x, images.x[:, 0])  # row t of the image is time step t


def test_digits_rows_through_the_pipeline():
    _, train_b, val_b, meta = batches_for({"name": "digits_rows"}, val_split=0.2, batch_size=32,
                                          train={"device": "cpu", "monitor": "val/acc"})
    assert meta.kind == "sequence" and meta.input_shape == [8, 8] and meta.vocab is None
    batch = next(iter(train_b))
    assert batch.x.shape == (32, 8, 8) and batch.x.dtype == torch.float32 and batch.lengths is None
    assert len(meta.class_names) == 10 and val_b is not None


def test_mnist_rows_reads_28_rows_of_28_pixels(tmp_path):
    from tests.data.test_datasets import make_mnist

    arrays = make_mnist(tmp_path, n_train=12, n_test=4)
    source = DATASETS.build({"name": "mnist_rows", "root": str(tmp_path), "download": False}, "train")
    assert source.kind == "sequence" and source.x.shape == (len(arrays["train"][0]), 28, 28)
    assert torch.equal(source.x[0], torch.as_tensor(arrays["train"][0][0]))


# ---------------------------------------------------------------- stream order (truncated BPTT)


def test_stream_order_row_b_of_batch_i_plus_1_follows_row_b_of_batch_i():
    order = stream_order(10, 3)  # 3 streams of 3 windows; window 9 fills no batch and is dropped
    batches = order.view(-1, 3)
    assert batches.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert torch.equal(batches[1:], batches[:-1] + 1)
    assert sorted(order.tolist()) == list(range(9))


def test_stream_order_too_few_windows_is_a_data_error():
    with pytest.raises(DataError) as info:
        stream_order(3, 4)
    assert "train.tbptt" in str(info.value) and "data.batch_size" in str(info.value)


def test_tbptt_batches_continue_each_other_in_the_text(tmp_path):
    text = "".join(chr(ord("a") + (i * 7) % 26) for i in range(45))  # 45 chars: 44 inputs, 11 windows of 4
    path = write_text(tmp_path, text)
    config, train_b, _, meta = batches_for({"name": "text", "path": path, "seq_len": 4}, batch_size=2,
                                           train={"device": "cpu", "monitor": "train/loss", "tbptt": True},
                                           task="language_model")
    assert config.train.tbptt and not train_b.shuffle
    batches = list(train_b)
    assert len(batches) == 5  # 2 streams of 5 windows; the 11th window is dropped
    for prev, nxt in zip(batches, batches[1:]):
        for b in range(2):
            # the next window of this stream starts where the previous one's targets end
            assert nxt.x[b, 0] == prev.y[b, -1]
            assert decode(prev.x[b], meta.vocab) + decode(nxt.x[b], meta.vocab) in text
    starts = [text.index(decode(batches[0].x[b], meta.vocab)) for b in range(2)]
    assert starts == [0, 20]  # stream b starts at window b * 5


# ---------------------------------------------------------------- config-time checks


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(raw)
    return info.value.problems


def text_lm(model: dict | None = None, **top) -> dict:
    return seq_config({"name": "text", "path": "corpus.txt", "seq_len": 16},
                      model=model or {"name": "lstm"}, **top)


def test_task_is_inferred_from_the_dataset_and_forecasting_defaults_to_mse():
    config = validate(seq_config({"name": "sine"}))
    assert config.task == "forecasting" and config.loss["name"] == "mse"
    config = validate(text_lm())
    assert config.task == "language_model" and config.loss["name"] == "cross_entropy"
    config = validate(seq_config({"name": "text_classification", "path": "r.csv"}))
    assert config.task == "classification" and config.loss["name"] == "cross_entropy"
    config = validate(seq_config({"name": "timeseries", "path": "s.csv"}))
    assert config.task == "forecasting" and config.loss["name"] == "mse"


@pytest.mark.parametrize("dataset, task, fits", [
    ({"name": "sine"}, "classification", "forecasting"),
    ({"name": "text", "path": "corpus.txt"}, "forecasting", "language_model"),
    ({"name": "digits_rows"}, "language_model", "classification"),
])
def test_task_that_does_not_fit_the_dataset(dataset, task, fits):
    problems = problems_of(seq_config(dataset, task=task))
    message = next(p for p in problems if p.startswith("task:"))
    assert repr(task) in message and repr(dataset["name"]) in message and f"set task: {fits}" in message


@pytest.mark.parametrize("dataset", [{"name": "text", "path": "c.txt"}, {"name": "text_classification", "path": "r.csv"}])
def test_mlp_cannot_read_token_ids(dataset):
    problems = problems_of(seq_config(dataset, model={"name": "mlp", "hidden": [8]}))
    message = next(p for p in problems if p.startswith("model.name:"))
    assert "'mlp' cannot read token ids" in message and "lstm" in message and "gru" in message


def test_non_token_datasets_accept_an_mlp():
    config = validate(seq_config({"name": "digits_rows"}, model={"name": "mlp", "hidden": [8]}))
    assert config.model["name"] == "mlp"


def test_bidirectional_language_model_is_refused():
    problems = problems_of(text_lm({"name": "gru", "bidirectional": True}))
    assert any(p.startswith("model.bidirectional:") and "language model" in p for p in problems), problems
    config = validate(seq_config({"name": "digits_rows"}, model={"name": "gru", "bidirectional": True}))
    assert config.model["bidirectional"] is True  # fine for classification


def test_tie_weights_needs_matching_sizes():
    problems = problems_of(text_lm({"name": "lstm", "tie_weights": True, "embedding_dim": 32, "hidden_size": 64}))
    message = next(p for p in problems if p.startswith("model.tie_weights:"))
    assert "embedding_dim == hidden_size" in message and "32" in message and "64" in message
    problems = problems_of(text_lm({"name": "lstm", "tie_weights": True}))  # defaults: 64 and 128
    assert any("got 64 and 128" in p for p in problems), problems
    config = validate(text_lm({"name": "lstm", "tie_weights": True, "embedding_dim": 32, "hidden_size": 32}))
    assert config.model["tie_weights"] is True


def test_tie_weights_only_for_language_models():
    problems = problems_of(seq_config({"name": "digits_rows"}, model={"name": "lstm", "tie_weights": True,
                                                                     "embedding_dim": 8, "hidden_size": 8}))
    assert any(p.startswith("model.tie_weights:") and "language_model" in p for p in problems), problems


def test_tbptt_on_a_classification_task_is_refused():
    raw = seq_config({"name": "text_classification", "path": "r.csv"}, train={"tbptt": True})
    problems = problems_of(raw)
    assert any(p.startswith("train.tbptt:") and "language_model" in p for p in problems), problems


def test_tbptt_needs_windows_that_follow_each_other():
    raw = seq_config({"name": "text", "path": "c.txt", "seq_len": 16, "stride": 8}, train={"tbptt": True})
    problems = problems_of(raw)
    assert any(p.startswith("data.dataset.stride:") and "stride = seq_len" in p for p in problems), problems
    assert validate(seq_config({"name": "text", "path": "c.txt", "seq_len": 16, "stride": 16},
                               train={"tbptt": True})).train.tbptt


@pytest.mark.parametrize("loss", ["cross_entropy", "bce_with_logits"])
def test_classification_loss_for_forecasting_is_refused(loss):
    problems = problems_of(seq_config({"name": "sine"}, loss={"name": loss}))
    message = next(p for p in problems if p.startswith("loss.name:"))
    assert repr(loss) in message and "forecasting" in message and "mse" in message


def test_forecasting_losses_are_refused_for_language_models():
    problems = problems_of(text_lm(loss={"name": "mse"}))
    assert any(p.startswith("loss.name:") and "language_model" in p for p in problems), problems


def test_every_problem_is_reported_at_once():
    raw = text_lm({"name": "lstm", "bidirectional": True, "tie_weights": True}, loss={"name": "mse"},
                  train={"tbptt": True, "monitor": "train/loss"})
    raw["data"]["dataset"]["stride"] = 3
    keys = {p.split(":", 1)[0] for p in problems_of(raw)}
    assert {"model.bidirectional", "model.tie_weights", "loss.name", "data.dataset.stride"} <= keys


def test_tie_weights_with_null_hidden_size_is_a_config_error():
    problems = problems_of(text_lm({"name": "lstm", "tie_weights": True, "hidden_size": None}))
    assert any(p.startswith("model.hidden_size:") for p in problems), problems


def test_recurrent_checks_use_the_validated_values():
    config = validate(text_lm({"name": "lstm", "bidirectional": "false"}))
    assert config.model["bidirectional"] is False
