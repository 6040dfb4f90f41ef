"""CSV files read as a stream of records (never the whole file at once), with errors naming the
file and the line where the record starts.

A field may hold up to FIELD_LIMIT characters: Python's csv default (128 KiB) is too small for a
text column holding whole documents."""

import csv
from collections.abc import Iterator

from dlcli.data.folders import regular_file
from dlcli.data.text import text_stream
from dlcli.errors import DataError

FIELD_LIMIT = 8 * 2**20  # characters in one field (8 MiB of ASCII text: a long book)


class CsvFile:
    """A UTF-8 CSV file (a BOM is dropped); each call to `header` or `rows` reads it afresh."""

    def __init__(self, file: str):
        self.file = file

    def header(self) -> list[str]:
        """The first record (blank lines before it skipped); [] for an empty file."""
        for _, fields in self._records():
            return fields
        return []

    def rows(self, width: int) -> Iterator[tuple[int, list[str]]]:
        """(line, fields) of each record after the header; one with other than `width` fields is a
        DataError naming its line."""
        records = self._records()
        next(records, None)
        for line, fields in records:
            if len(fields) != width:
                raise DataError(f"{self.file}:{line}: expected {width} fields, found {len(fields)}")
            yield line, fields

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        path = regular_file(self.file, "CSV file")
        csv.field_size_limit(FIELD_LIMIT)
        with text_stream(path, "utf-8-sig", newline="") as handle:  # csv reads the line ends itself
            reader = csv.reader(handle)
            end = 0  # the last line read: a record spans lines when a quoted field holds line breaks
            try:
                for fields in reader:
                    start, end = end + 1, reader.line_num
                    if fields:  # a blank line
                        yield start, fields
            except csv.Error as err:
                raise DataError(f"{self.file}:{end + 1}: {_problem(err)}") from None


def _problem(err: csv.Error) -> str:
    if "field larger than field limit" in str(err):
        return (f"a field longer than {FIELD_LIMIT // 2**20} MiB ({FIELD_LIMIT} characters), "
                f"the most dlcli reads in one CSV field")
    return f"malformed CSV: {err}"
