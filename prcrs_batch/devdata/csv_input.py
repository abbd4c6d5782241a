"""Reading a file a person hands the job (a cohort file, lab rows to score), strictly.

A row with more or fewer fields than the header is refused, naming its line: pandas would
shift its columns (or pad them) without a word. A header that looks separated by another
delimiter names the one expected; a file that is not UTF-8 text is named in one line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import pandas as pd

from prcrs_batch.errors import SafeMessage

OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


class InputFileError(SafeMessage, ValueError):
    """A file handed to a command cannot be read as what it should be; the message is one
    line naming the file (and the line, the column) and what is expected."""


def decode(data: bytes, name: str) -> str:
    """The file's text (UTF-8, a byte-order mark allowed), or one line naming the file.

    >>> decode(b"\\xef\\xbb\\xbfa,b\\n", "x.csv")
    'a,b\\n'
    >>> decode(b"PK\\x03\\x04\\x00\\x00", "labs.xlsx")
    Traceback (most recent call last):
    ...
    prcrs_batch.devdata.csv_input.InputFileError: labs.xlsx: a binary file, not text: give \
a comma-separated (CSV) text file
    """
    if b"\x00" in data[:65536]:
        raise InputFileError(
            f"{name}: a binary file, not text: give a comma-separated (CSV) text file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFileError(
            f"{name}, line {line}: not UTF-8 text: save the file as UTF-8 (CSV UTF-8)"
        ) from None


@dataclass(frozen=True)
class CsvTable:
    """A CSV file's rows as pandas reads them, and the line each row starts on."""

    name: str
    frame: pd.DataFrame
    lines: list[int]  # frame row i starts on line lines[i] (the header is line 1)

    def require(self, column: str, valid: pd.Series, expected: str) -> None:
        """Raise InputFileError naming the first row where `valid` (one bool per row) is
        False: its line, the column, its value and what was `expected`."""
        bad = [position for position, ok in enumerate(valid.to_numpy(bool)) if not ok]
        if bad:
            value = self.frame[column].iloc[bad[0]]
            raise InputFileError(
                f"{self.name}, line {self.lines[bad[0]]}: column {column} is "
                f"{_shown(value)}, not {expected}"
            )


def read_csv(text: str, name: str, *, expected: list[str], **read_options: Any) -> CsvTable:
    """Read comma-separated `text` strictly, then as pandas would (`read_options`).

    >>> read_csv("a,b\\n1,2\\n\\n3,4\\n", "x.csv", expected=["a", "b"]).lines
    [2, 4]
    >>> read_csv("a,b\\n1,2,3\\n", "x.csv", expected=["a", "b"])
    Traceback (most recent call last):
    ...
    prcrs_batch.devdata.csv_input.InputFileError: x.csv, line 2: 3 fields where the header \
has 2: a value holding a comma must be in double quotes
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines: list[int] = []
    try:
        header = next(reader, None)
        if not header:
            raise InputFileError(f"{name}: no header line: expected {','.join(expected)}")
        _check_delimiter(header, name, expected)
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:
                continue  # a blank line: pandas skips it too
            if len(row) != len(header):
                raise InputFileError(
                    f"{name}, line {start}: {len(row)} fields where the header has "
                    f"{len(header)}: a value holding a comma must be in double quotes"
                )
            lines.append(start)
    except csv.Error as exc:
        raise InputFileError(f"{name}, line {reader.line_num}: not CSV: {exc}") from None
    frame = pd.read_csv(io.StringIO(text), **read_options)
    if len(frame) != len(lines):  # cannot happen for a file that passed the checks above
        raise InputFileError(f"{name}: read {len(frame)} rows, expected {len(lines)}")
    return CsvTable(name, frame, lines)


def _check_delimiter(header: list[str], name: str, expected: list[str]) -> None:
    if any(column in header for column in expected):
        return
    for delimiter, called in OTHER_DELIMITERS.items():
        if any(delimiter in column for column in header):
            raise InputFileError(
                f"{name}: the header is separated by {called}; expected commas: "
                f"{','.join(expected)}"
            )


def _shown(value: Any, limit: int = 40) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return "empty"
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 4] + "...'"
