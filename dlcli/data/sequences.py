"""Sequence datasets: a text for language modelling, labelled texts, time series, image rows, sine
waves. Builders return raw streams or token lists; `windows.prepare` splits and encodes them."""

import json
import math
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from dlcli.data.folders import regular_file
from dlcli.data.registry import DATASETS
from dlcli.data.source import Source
from dlcli.data.splits import split_file
from dlcli.data.tabular import _canonical, _label_names, _number, read_header, table_rows
from dlcli.data.text import read_text, text_stream, tokenize
from dlcli.errors import DataError
from dlcli.types import NonNegativeFloat, PositiveInt

Length = Annotated[int, Field(gt=0, le=100_000)]
Level = Literal["char", "word", "whitespace", "bpe"]
VocabSize = Annotated[int, Field(ge=260, le=1_000_000)]  # BPE: 256 bytes + <pad>, <unk> and some merges


@DATASETS.register("text", tags=("token_stream", "reads_tokens"))
def text(split, *, path: str, test_path: str | None = None, val_path: str | None = None, level: Level = "char",
         lowercase: bool = False, seq_len: Length = 128, stride: Length | None = None,
         min_freq: PositiveInt = 1, max_vocab: PositiveInt | None = None, vocab_size: VocabSize | None = None,
         encoding: str = "utf-8"):
    """A plain-text file for language modelling, cut into windows of seq_len tokens (split by position)."""
    file = split_file("text", split, path, test_path, val=val_path)
    raw = read_text(file, encoding)
    # bpe: the text itself is split by position; the tokenizer is then learnt from the training part
    tokens = raw if level == "bpe" else tokenize(raw, level, lowercase)
    options = {"level": level, "lowercase": lowercase, "seq_len": seq_len, "stride": stride or seq_len,
               "min_freq": min_freq, "max_vocab": max_vocab, "file": file, "vocab_size": vocab_size}
    return Source(y=None, class_names=[], kind="tokens", stream=tokens, options=options)


@DATASETS.register("text_classification", tags=("labelled_texts", "reads_tokens"))
def text_classification(split, *, path: str, test_path: str | None = None, val_path: str | None = None,
                        text_column: str = "text", label_column: str = "label", level: Level = "word",
                        lowercase: bool = True, max_len: Length = 256, min_freq: PositiveInt = 1,
                        max_vocab: PositiveInt | None = None, vocab_size: VocabSize | None = None):
    """Labelled texts from a CSV or JSONL file; padded per batch, truncated to max_len tokens."""
    import torch

    file = split_file("text_classification", split, path, test_path, val=val_path)
    texts, labels = [], []
    for text, label in labelled_texts(file, text_column, label_column):  # tokenized as read: one copy
        texts.append(text if level == "bpe" else tokenize(text, level, lowercase))  # bpe: learnt later
        labels.append(label)
    names = _label_names(labels)
    lookup = {name: i for i, name in enumerate(names)}
    options = {"level": level, "lowercase": lowercase, "max_len": max_len, "min_freq": min_freq,
               "max_vocab": max_vocab, "text_column": text_column, "label_column": label_column,
               "vocab_size": vocab_size}
    return Source(y=torch.tensor([lookup[v] for v in labels], dtype=torch.long), class_names=names, kind="text",
                  texts=texts, options=options)


def text_problems(params: dict, task) -> list[str]:
    """vocab_size sizes a BPE tokenizer; max_vocab and min_freq's cut apply to the other levels."""
    if params["level"] != "bpe" and params.get("vocab_size") is not None:
        return [f"data.dataset.vocab_size: only for level bpe (level is {params['level']}); "
                "use max_vocab to cap a char or word vocabulary"]
    if params["level"] == "bpe" and params.get("max_vocab") is not None:
        return ["data.dataset.max_vocab: level bpe sizes its vocabulary with vocab_size"]
    return []


text.config_problems = text_problems
text_classification.config_problems = text_problems


def read_labelled_texts(file: str, text_column: str, label_column: str | None) -> tuple[list[str], list[str]]:
    """(texts, labels) from .csv or .jsonl; labels are empty when label_column is None (inference)."""
    pairs = list(labelled_texts(file, text_column, label_column))
    return [text for text, _ in pairs], [label for _, label in pairs if label_column]


def labelled_texts(file: str, text_column: str, label_column: str | None) -> Iterator[tuple[str, str]]:
    """(text, label) of each row of a .csv or .jsonl file, streamed; the label is "" when
    label_column is None (inference)."""
    path = regular_file(file, "file")
    columns = [text_column] + ([label_column] if label_column else [])
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(file, columns)
    found = False
    for line, row in rows:
        for column in columns:
            if not isinstance(row, dict) or row.get(column) is None:
                raise DataError(f"{file}:{line}: missing column {column!r}")
        found = True
        yield str(row[text_column]), _canonical(str(row[label_column]).strip()) if label_column else ""
    if not found:
        raise DataError(f"{file}: no data rows")


def _csv_rows(file: str, columns: list[str]) -> Iterator[tuple[int, dict]]:
    """Rows as {column: value} for just `columns` (a missing one is left out, for the caller to name)."""
    header = read_header(file)
    at = {c: header.index(c) for c in columns if c in header}
    for line, row in table_rows(file, header):
        yield line, {c: row[i] for c, i in at.items()}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with text_stream(path) as handle:
        for line, raw in enumerate(handle, start=1):
            if raw.strip():
                try:
                    yield line, json.loads(raw)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{line}: not valid JSON: {err.msg}") from None


Lag = Annotated[int, Field(ge=0, le=100_000)]


@DATASETS.register("timeseries", tags=("series",))
def timeseries(split, *, path: str, test_path: str | None = None, val_path: str | None = None,
               columns: list[str] | None = None, targets: list[str] | None = None, window: Length = 32,
               horizon: Length = 1, stride: PositiveInt = 1, difference: Literal[0, 1] = 1,
               seasonal_difference: Lag = 0, id: str | None = None):
    """Numeric CSV columns over time: each window of inputs predicts the next `horizon` rows of targets
    (by default as changes from the window's last values: difference 1); an `id` column holds several series."""
    file = split_file("timeseries", split, path, test_path, val=val_path)
    names, values, segments = read_series(file, columns, id)[:3]
    missing = [t for t in targets or [] if t not in names]
    if missing:
        raise DataError(f"data.dataset.targets: {missing} are not among the input columns {names}")
    options = {"window": window, "horizon": horizon, "stride": stride, "targets": targets or names,
               "difference": difference, "seasonal_difference": seasonal_difference, "id": id}
    return Source(y=None, class_names=[], kind="series", stream=values,
                  feature_names=names, options=options, segments=segments)


def read_series(file: str, columns: list[str] | None, id_column: str | None = None):
    """(column names, float32 values [rows, columns], rows per series or None, the series' ids) of a
    numeric CSV, streamed. With `id_column`, rows are grouped by its value (series in order of first
    appearance, each keeping its rows' order)."""
    import torch

    header = read_header(file)
    missing = [c for c in (columns or []) + ([id_column] if id_column else []) if c not in header]
    if missing:
        raise DataError(f"{file}: missing column(s) {missing}; columns are {header}")
    names = columns or [c for c in header if c != id_column]
    if id_column in names:
        raise DataError(f"data.dataset.id: column {id_column!r} is also an input column")
    at = [header.index(c) for c in names]
    id_at = header.index(id_column) if id_column else None
    series: dict[str, array] = {}
    for line, row in table_rows(file, header):
        values = series.setdefault(row[id_at].strip() if id_at is not None else "", array("f"))
        try:
            values.extend([_number(row[i], file, line, c) for c, i in zip(names, at)])
        except DataError as err:
            hint = "" if columns else "; choose numeric columns with data.dataset.columns"
            raise DataError(f"{err}{hint}") from None
    if not series:
        raise DataError(f"{file}: no data rows")
    lengths = [len(v) // len(names) for v in series.values()]
    flat = next(iter(series.values()))  # one series: its own array, no copy
    if len(series) > 1:
        flat = array("f")
        for v in series.values():
            flat.extend(v)
    stream = torch.frombuffer(flat, dtype=torch.float32).view(sum(lengths), len(names))
    return names, stream, (lengths if id_column else None), list(series)


@DATASETS.register("sine", tags=("series",))
def sine(split, *, length: Annotated[int, Field(ge=8, le=10_000_000)] = 2000, period: float = 40.0,
         noise: NonNegativeFloat = 0.1, window: Length = 32, horizon: Length = 1, stride: PositiveInt = 1,
         seed: int = 0, difference: Literal[0, 1] = 1, seasonal_difference: Lag = 0):
    """Generated noisy sine wave for forecasting (offline); the test split is a fresh draw."""
    import torch

    gen = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
    t = torch.arange(length, dtype=torch.float32)
    phase = float(torch.rand((), generator=gen)) * 2 * math.pi
    values = torch.sin(2 * math.pi * t / period + phase) + noise * torch.randn(length, generator=gen)
    options = {"window": window, "horizon": horizon, "stride": stride, "targets": ["value"],
               "difference": difference, "seasonal_difference": seasonal_difference}
    return Source(y=None, class_names=[], kind="series", stream=values[:, None], feature_names=["value"],
                  options=options)
