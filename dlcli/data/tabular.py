"""CSV tables -> in-memory tensors, with errors that name the file, line and column.

A table's outputs are a label column (classification), numeric target columns (regression) or
0/1 label columns (multilabel). Feature columns are numeric, or categorical when they hold text
(or are named in `categorical`): those stay strings here and are one-hot encoded by `encode`
with the training split's vocabulary (see pipeline.describe)."""

import math
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from dlcli.data.csvfile import CsvFile
from dlcli.data.registry import DATASETS
from dlcli.data.source import Source
from dlcli.data.splits import split_file
from dlcli.errors import DataError


def _number(text: str, file: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        what = "missing value" if text.strip().lower() in MISSING else f"not a number: {text!r}"
        raise DataError(f"{file}:{line}: column {column!r}: {what}") from None
    if not abs(value) <= FLOAT32_MAX:  # cells are kept as float32: 1e39 would become inf there
        why = "not a finite number" if not math.isfinite(value) else "beyond float32's range (+-3.4e38)"
        raise DataError(f"{file}:{line}: column {column!r}: {why}: {text!r}")
    return value


FLOAT32_MAX = 3.4028234663852886e38


# Cells that mean "no value", not text: a numeric column holding them is a numeric column with a
# missing value (an error naming the cell), never a categorical column.
MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


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


def read_header(file: str) -> list[str]:
    """The header row of a CSV file; a name that appears twice is a DataError."""
    header = CsvFile(file).header()
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{file}: column name(s) {repeated} appear more than once in the header")
    return header


def table_rows(file: str, header: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each data row, streamed; a short or long row is a DataError naming its line."""
    return CsvFile(file).rows(len(header))


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
    """The table as tensors, read row by row. A feature column not named `categorical` or `numeric`
    is numeric until a cell holds text; then it is categorical, and the file is read again."""
    header = read_header(file)
    features = feature_columns(file, header, cols)
    categorical = set(cols.categorical or [])
    while True:
        table = _Table(file, header, features, categorical, cols)
        try:
            for line, row in table_rows(file, header):
                table.add(line, row)
        except _HoldsText as found:
            categorical.add(found.column)
            continue
        return table.source()


class _HoldsText(Exception):
    """A feature column of unknown kind holds text: it is categorical."""

    def __init__(self, column: str):
        super().__init__(column)
        self.column = column


class _Table:
    """A table's cells converted as they are read (numbers into float32 arrays, repeated strings
    shared), so a large file is never held as rows of Python strings."""

    def __init__(self, file: str, header: list[str], features: list[str], categorical: set, cols: Columns):
        at = {c: i for i, c in enumerate(header)}
        self.file, self.cols, self.rows = file, cols, 0
        self.numeric = [(c, at[c]) for c in features if c not in categorical]
        self.unknown_kind = {c for c, _ in self.numeric} - set(cols.numeric or [])
        self.categorical = [(c, at[c]) for c in features if c in categorical]
        self.values = [(c, at[c]) for c in cols.targets or cols.labels or []]  # regression / multilabel
        self.label = at[cols.label] if cols.label and not self.values else None  # classification
        self.weight = at[cols.weight] if cols.weight else None
        self.x, self.y, self.weights = array("f"), array("f"), array("f")
        self.classes: list[str] = []
        self.text: dict[str, list[str]] = {c: [] for c, _ in self.categorical}
        self.shared: dict[str, str] = {}  # one string object per distinct value
        self.missing: dict[str, int] = {}  # unknown-kind column -> first line with a missing cell

    def add(self, line: int, row: list[str]) -> None:
        file, share = self.file, self.shared.setdefault
        self.rows += 1
        self.x.extend([self._feature(row[i], line, c) for c, i in self.numeric])
        convert = _binary if self.cols.labels else _number
        self.y.extend([convert(row[i], file, line, c) for c, i in self.values])
        if self.label is not None:
            label = _canonical(row[self.label].strip())
            self.classes.append(share(label, label))
        if self.weight is not None:
            self.weights.append(_number(row[self.weight], file, line, str(self.cols.weight)))
        for c, i in self.categorical:
            value = row[i].strip()
            self.text[c].append(share(value, value))

    def _feature(self, text: str, line: int, column: str) -> float:
        if column not in self.unknown_kind:
            return _number(text, self.file, line, column)
        if text.strip().lower() in MISSING:  # an error only if the column stays numeric
            self.missing.setdefault(column, line)
            return math.nan
        if not _is_number(text):
            raise _HoldsText(column)
        return _number(text, self.file, line, column)

    def source(self) -> Source:
        if not self.rows:
            raise DataError(f"{self.file}: no data rows")
        if self.missing:
            column, line = min(self.missing.items(), key=lambda item: item[1])
            raise DataError(f"{self.file}:{line}: column {column!r}: missing value")
        weights = None
        if self.weight is not None:
            weights = _matrix(self.weights, self.rows, 1)[:, 0]
            if (weights < 0).any():
                raise DataError(f"{self.file}: column {self.cols.weight!r}: sample weights must be >= 0")
        y, names = self._outputs()
        return Source(y=y, x=_matrix(self.x, self.rows, len(self.numeric)), weights=weights, class_names=names,
                      kind="tabular", feature_names=[c for c, _ in self.numeric], table=self.text,
                      options={"file": self.file, "targets": self.cols.targets or [], "label": self.cols.label})

    def _outputs(self):
        """(y, class names): float targets [N, T] (regression), 0/1 floats [N, L] (multilabel), or class ids."""
        import torch

        if self.values:
            return _matrix(self.y, self.rows, len(self.values)), self.cols.labels or []
        if self.label is None:
            return torch.zeros(self.rows), []
        names = _label_names(self.classes)
        lookup = {name: i for i, name in enumerate(names)}
        return torch.tensor([lookup[v] for v in self.classes], dtype=torch.long), names


def _matrix(values: array, rows: int, width: int):
    """A float32 array as a [rows, width] tensor, sharing its memory."""
    import torch

    if not values:
        return torch.zeros(rows, width)
    return torch.frombuffer(values, dtype=torch.float32).view(rows, width)


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
    missing = [c for c in names if c not in read_header(file)]
    if missing:
        raise DataError(f"{file}: missing feature column(s) {missing} the model was trained on")
    source = read_csv(file, Columns(label=None, features=names, categorical=list(meta.categories or {}),
                                    numeric=list(meta.feature_names)))
    known = {column: set(vocab) for column, vocab in (meta.categories or {}).items()}
    unseen = [[c for c, vocab in known.items() if source.table[c][i] not in vocab] for i in range(len(source.y))]
    encode(source, meta)
    return source.x, unseen


@DATASETS.register("csv", tags=("tabular", "label_sets"))
def csv(split, *, path: str, label: str = "label", targets: list[str] | str | None = None,
        labels: Annotated[list[str], Field(min_length=1)] | None = None, features: list[str] | None = None,
        categorical: list[str] | None = None, numeric: list[str] | None = None,
        max_categories: Annotated[int, Field(ge=1, le=100_000)] = 100, weight: str | None = None,
        test_path: str | None = None, val_path: str | None = None):
    """A CSV table: feature columns (numeric or categorical) and a label column, numeric `targets`
    (regression) or 0/1 `labels` columns (multilabel); optional per-sample weight column."""
    file = split_file("csv", split, path, test_path, val=val_path)
    targets = [targets] if isinstance(targets, str) else targets
    source = read_csv(file, Columns(label, targets, labels, features, weight, categorical, numeric))
    source.options["max_categories"] = max_categories
    return source
