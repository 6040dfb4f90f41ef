"""CSV tables -> in-memory tensors, with errors that name the file, line and column."""

import csv as csvlib
import math
from pathlib import Path

from dlcli.data.source import Source
from dlcli.data.text import decoded_text
from dlcli.errors import DataError


def _number(text: str, file: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{file}:{line}: column {column!r}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{file}:{line}: column {column!r}: not a finite number: {text!r}")
    return value


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


def read_csv(file: str, label: str, features: list[str] | None, weight: str | None) -> Source:
    import torch

    path = Path(file)
    with open_csv(path) as handle:
        reader = csvlib.DictReader(handle)
        header = reader.fieldnames or []
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise DataError(f"{file}: column name(s) {repeated} appear more than once in the header")
        missing = [c for c in [label, *(features or []), *([weight] if weight else [])] if c not in header]
        if missing:
            raise DataError(f"{file}: missing column(s) {missing}; columns are {header}")
        columns = features or [c for c in header if c not in (label, weight)]
        rows, labels, weights = [], [], []
        for line, row in enumerate(reader, start=2):
            if None in row or any(row[c] is None for c in header):
                raise DataError(f"{file}:{line}: expected {len(header)} fields")
            rows.append([_number(row[c], file, line, c) for c in columns])
            labels.append(_canonical(row[label].strip()))
            if weight:
                weights.append(_number(row[weight], file, line, weight))
    if not rows:
        raise DataError(f"{file}: no data rows")
    if any(w < 0 for w in weights):
        raise DataError(f"{file}: column {weight!r}: sample weights must be >= 0")
    names = _label_names(labels)
    lookup = {name: i for i, name in enumerate(names)}
    y = torch.tensor([lookup[v] for v in labels], dtype=torch.long)
    return Source(
        y=y,
        x=torch.tensor(rows, dtype=torch.float32),
        weights=torch.tensor(weights, dtype=torch.float32) if weight else None,
        class_names=names,
        kind="tabular",
        feature_names=columns,
    )


def read_features(file: str, feature_names: list[str]):
    """Feature rows of a CSV for inference (other columns, e.g. a label, are ignored)."""
    import torch

    path = Path(file)
    with open_csv(path) as handle:
        reader = csvlib.DictReader(handle)
        missing = [c for c in feature_names if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{file}: missing feature column(s) {missing} the model was trained on")
        width = len(reader.fieldnames)
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or any(value is None for value in row.values()):
                raise DataError(f"{file}:{line}: expected {width} fields")
            rows.append([_number(row[c], file, line, c) for c in feature_names])
    if not rows:
        raise DataError(f"{file}: no data rows")
    return torch.tensor(rows, dtype=torch.float32)
