"""CSV tables -> in-memory tensors, with errors that name the file, line and column.

A table's outputs are a label column (classification), numeric target columns (regression) or
0/1 label columns (multilabel). Feature columns are numeric, or categorical when they hold text
(or are named in `categorical`): those stay strings here and are one-hot encoded by `encode`
with the training split's vocabulary (see pipeline.describe)."""

import csv as csvlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from dlcli.data.source import Source
from dlcli.data.text import decoded_text
from dlcli.errors import DataError


def _number(text: str, file: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        what = "missing value" if text.strip().lower() in MISSING else f"not a number: {text!r}"
        raise DataError(f"{file}:{line}: column {column!r}: {what}") from None
    if not math.isfinite(value):
        raise DataError(f"{file}:{line}: column {column!r}: not a finite number: {text!r}")
    return value


# Cells that mean "no value", not text: a numeric column holding them is a numeric column with a
# missing value (an error naming the cell), never a categorical column.
MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _numeric_or_missing(text: str) -> bool:
    return text.strip().lower() in MISSING or _is_number(text)


def open_csv(path: Path):
    """The file as a text stream for csv, decoded as UTF-8 (a BOM is dropped); a clear error otherwise."""
    import io

    if path.is_dir():
        raise DataError(f"{path}: expected a CSV file, got a folder")
    if not path.is_file():
        raise DataError(f"CSV file not found: {path.resolve()}")
    return io.StringIO(decoded_text(path, "utf-8-sig", newline=""), newline="")  # csv reads the line ends


def _label_names(labels: list[str]) -> list[str]:
    """Sorted class names; integer labels sort numerically so '10' comes after '9'."""
    unique = set(labels)
    try:
        return [str(v) for v in sorted(int(v) for v in unique)]
    except ValueError:
        return sorted(unique)


def _canonical(label: str) -> str:
    """'01' and '1' are the same integer class."""
    try:
        return str(int(label))
    except ValueError:
        return label


@dataclass
class Columns:
    """What a table's columns are for (from the dataset config)."""

    label: str | None = "label"  # classification (None: no output column, for inference)
    targets: list[str] | None = None  # regression
    labels: list[str] | None = None  # multilabel
    features: list[str] | None = None  # default: every other column
    weight: str | None = None
    categorical: list[str] | None = None  # force these feature columns to be categorical
    numeric: list[str] | None = None  # ... or numeric (a text value is then an error)

    def outputs(self) -> list[str]:
        return self.targets or self.labels or ([self.label] if self.label else [])

    def named(self) -> list[str]:
        return [*self.outputs(), *(self.features or []), *([self.weight] if self.weight else []),
                *(self.categorical or []), *(self.numeric or [])]


def read_rows(file: str) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line, row)]) with repeated names and short or long rows refused."""
    with open_csv(Path(file)) as handle:
        reader = csvlib.DictReader(handle)
        header = cast(list[str], reader.fieldnames or [])  # DictReader reads the header row as a list
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise DataError(f"{file}: column name(s) {repeated} appear more than once in the header")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or any(row[c] is None for c in header):
                raise DataError(f"{file}:{line}: expected {len(header)} fields")
            rows.append((line, row))
    if not rows:
        raise DataError(f"{file}: no data rows")
    return header, rows


def feature_columns(file: str, header: list[str], cols: Columns) -> list[str]:
    missing = [c for c in cols.named() if c not in header]
    if missing:
        raise DataError(f"{file}: missing column(s) {missing}; columns are {header}")
    outputs = cols.outputs()
    both = [c for c in cols.features or [] if c in outputs or c == cols.weight]
    if both:
        raise DataError(f"{file}: column(s) {both} are both features and {'targets' if cols.targets else 'labels'} "
                        f"(or the weight); remove them from data.dataset.features")
    features = cols.features or [c for c in header if c not in outputs and c != cols.weight]
    stray = [c for c in [*(cols.categorical or []), *(cols.numeric or [])] if c not in features]
    if stray:
        raise DataError(f"{file}: column(s) {stray} in categorical/numeric are not feature columns")
    if not features:
        raise DataError(f"{file}: no feature columns left besides the outputs")
    return features


def read_csv(file: str, cols: Columns) -> Source:
    import torch

    header, rows = read_rows(file)
    features = feature_columns(file, header, cols)
    categorical = [c for c in features if c in (cols.categorical or [])
                   or (c not in (cols.numeric or []) and not all(_numeric_or_missing(row[c]) for _, row in rows))]
    numeric = [c for c in features if c not in categorical]
    x = torch.tensor([[_number(row[c], file, line, c) for c in numeric] for line, row in rows],
                     dtype=torch.float32).reshape(len(rows), len(numeric))
    y, names = _outputs(file, rows, cols)
    weights = None
    if cols.weight:
        weights = torch.tensor([_number(row[cols.weight], file, line, cols.weight) for line, row in rows])
        if (weights < 0).any():
            raise DataError(f"{file}: column {cols.weight!r}: sample weights must be >= 0")
    return Source(y=y, x=x, weights=weights, class_names=names, kind="tabular", feature_names=numeric,
                  table={c: [row[c].strip() for _, row in rows] for c in categorical},
                  options={"file": file, "targets": cols.targets or []})


def _outputs(file: str, rows, cols: Columns):
    """(y, class names): float targets [N, T] (regression), 0/1 floats [N, L] (multilabel), or class ids."""
    import torch

    if cols.targets:
        values = [[_number(row[c], file, line, c) for c in cols.targets] for line, row in rows]
        return torch.tensor(values, dtype=torch.float32), []
    if not cols.outputs():
        return torch.zeros(len(rows)), []
    if cols.labels:
        return torch.tensor([[_binary(row[c], file, line, c) for c in cols.labels] for line, row in rows]), cols.labels
    labels = [_canonical(row[str(cols.label)].strip()) for _, row in rows]
    names = _label_names(labels)
    lookup = {name: i for i, name in enumerate(names)}
    return torch.tensor([lookup[v] for v in labels], dtype=torch.long), names


def _binary(text: str, file: str, line: int, column: str) -> float:
    value = _number(text, file, line, column)
    if value not in (0.0, 1.0):
        raise DataError(f"{file}:{line}: column {column!r}: a label column holds 0 or 1 (got {text!r})")
    return value


def vocabulary(values: list[str], max_size: int) -> list[str]:
    """A categorical column's values by falling frequency (ties in first-seen order), at most max_size."""
    return [value for value, _ in Counter(values).most_common(max_size)]


def encode(source: Source, meta) -> None:
    """x := [numeric features (z-scored with the training split's statistics) | one-hot categorical
    columns], each with a last slot for values the training split did not have; their counts per
    column go to source.unknown."""
    import torch

    if meta.feature_mean is not None:
        source.x = (source.x - torch.tensor(meta.feature_mean)) / torch.tensor(meta.feature_std)
    blocks, source.unknown = [source.x], {}
    for column, vocab in (meta.categories or {}).items():
        index = {value: i for i, value in enumerate(vocab)}
        ids = torch.tensor([index.get(v, len(vocab)) for v in source.table[column]], dtype=torch.long)
        source.unknown[column] = int((ids == len(vocab)).sum())
        blocks.append(torch.nn.functional.one_hot(ids, len(vocab) + 1).float())
    source.x, source.table = torch.cat(blocks, 1), None


def read_features(file: str, meta):
    """(encoded feature rows, the columns whose value was unseen in training, per row) of a CSV for
    inference; other columns (a label, targets) are ignored."""
    names = [*meta.feature_names, *(meta.categories or {})]
    header, rows = read_rows(file)
    missing = [c for c in names if c not in header]
    if missing:
        raise DataError(f"{file}: missing feature column(s) {missing} the model was trained on")
    source = read_csv(file, Columns(label=None, features=names, categorical=list(meta.categories or {}),
                                    numeric=list(meta.feature_names)))
    encode(source, meta)
    unseen = [[c for c, vocab in (meta.categories or {}).items() if row[c].strip() not in vocab] for _, row in rows]
    return source.x, unseen
