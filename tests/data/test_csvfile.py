"""CSV files read as a stream (dlcli/data/csvfile.py, tabular.py, sequences.py): fields up to
FIELD_LIMIT, errors naming the file and the line where the record starts, non-regular files refused."""

import os

import pytest

from dlcli.data.csvfile import FIELD_LIMIT
from dlcli.data.datasets import DATASETS
from dlcli.errors import DataError

LONG = "word " * 60_000  # 300 KB: over Python csv's default field limit (128 KiB)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("spec, header, row", [
    ({"name": "csv"}, "x,note,label", lambda i, note: f"{i},{note},{'ab'[i % 2]}"),
    ({"name": "timeseries", "columns": ["value"]}, "value,note", lambda i, note: f"{i},{note}"),
    ({"name": "text_classification"}, "text,label", lambda i, note: f"{note},{'ab'[i % 2]}"),
], ids=["csv", "timeseries", "text_classification"])
def test_a_field_over_128_kib_is_read(tmp_path, spec, header, row):
    rows = [row(i, LONG if i == 3 else f"short {i}") for i in range(8)]
    path = write(tmp_path / "long.csv", "\n".join([header, *rows]) + "\n")
    source = DATASETS.build({**spec, "path": path}, "train")
    assert len(source) == 8
    if spec["name"] == "text_classification":
        assert len(source.texts[3]) == 60_000
    if spec["name"] == "csv":
        assert source.table["note"][3] == LONG.strip()


def test_a_field_over_the_limit_is_a_data_error_naming_file_and_line(tmp_path):
    huge = "x" * (FIELD_LIMIT + 1)
    path = write(tmp_path / "huge.csv", f'text,label\nfine,a\n"two\nlines",b\n{huge},a\n')
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "text_classification", "path": path}, "train")
    assert str(info.value).startswith(f"{path}:5: a field longer than 8 MiB ({FIELD_LIMIT} characters)")
    assert info.value.exit_code == 3


def test_errors_name_the_line_where_the_record_starts(tmp_path):
    """A quoted field may hold line breaks: the line is the file's line, not the record's number."""
    path = write(tmp_path / "t.csv", 'a,b,label\n1,2,"multi\nline label"\n\n3,oops,x\n')
    with pytest.raises(DataError, match=r"t\.csv:5: column 'b': not a number: 'oops'"):
        DATASETS.build({"name": "csv", "path": path, "numeric": ["a", "b"]}, "train")


def test_a_column_that_holds_text_only_late_is_categorical_with_its_own_text(tmp_path):
    rows = [f"{i:02d},{i % 2}" for i in range(50)] + ["n/a,0", "unknown,1"]
    path = write(tmp_path / "t.csv", "zip,label\n" + "\n".join(rows) + "\n")
    source = DATASETS.build({"name": "csv", "path": path}, "train")
    assert source.feature_names == [] and list(source.table) == ["zip"]
    assert source.table["zip"][:2] == ["00", "01"] and source.table["zip"][-2:] == ["n/a", "unknown"]
    assert source.y.tolist() == [i % 2 for i in range(50)] + [0, 1]


def test_a_missing_cell_in_a_numeric_column_names_its_line(tmp_path):
    path = write(tmp_path / "t.csv", "x,y,label\n1,2,a\n3,,b\n5,na,a\n")
    with pytest.raises(DataError, match=r"t\.csv:3: column 'y': missing value"):
        DATASETS.build({"name": "csv", "path": path}, "train")


def test_bytes_that_are_not_utf8_midway_name_the_line_and_byte(tmp_path):
    path = tmp_path / "t.csv"
    body = "".join(f"{i},{i % 2}\n" for i in range(20_000))  # past the first chunk a stream decodes
    path.write_bytes(b"x,label\n" + body.encode() + "caf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        DATASETS.build({"name": "csv", "path": str(path)}, "train")
    byte = len(b"x,label\n" + body.encode()) + 3
    assert str(info.value).startswith(f"{path}:20002: not valid UTF-8 text (byte {byte})")


@pytest.mark.parametrize("name", ["csv", "timeseries", "text_classification", "text"])
def test_a_fifo_is_refused_before_it_is_opened(tmp_path, name):
    fifo = tmp_path / "table.csv"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer
    with pytest.raises(DataError, match="table.csv: a FIFO \\(named pipe\\), not a regular file"):
        DATASETS.build({"name": name, "path": str(fifo)}, "train")
