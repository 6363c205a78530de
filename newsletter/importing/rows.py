"""A subscriber CSV, read and checked row by row: what each good row asks for, and why each bad
row is refused (with its line number). No database here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from newsletter.errors import OperatorError
from newsletter.models import Frequency
from newsletter.validation import (
    InvalidInput,
    clean_interests,
    clean_timezone,
    clean_weekday,
    normalise_email,
)
from newsletter.values import digits_only

COLUMNS = ("email", "interests", "frequency", "max_papers", "weekday", "timezone")
MAX_FIELD = 4000  # csv's own limit is 128 KB a field; no column needs more than this


class RowProblem(BaseModel):
    """One row the import left alone: its line in the file, the address if it had one, why."""

    line: int
    email: str | None = None
    reason: str


@dataclass(frozen=True)
class ImportRow:
    """A good row: the address (normalised, and its lookup key) and the preferences it sets.
    None means the cell was empty or the column absent: keep the current or default value."""

    line: int
    email: str
    key: str
    interests: str | None
    frequency: Frequency | None
    max_papers: int | None
    weekday: int | None  # 0 = Monday, as NEWSLETTER_DIGEST_WEEKDAY
    timezone: str | None

    def preferences(self) -> dict[str, object]:
        """The columns this row sets, by Subscriber field name."""
        values = {
            "interests": self.interests,
            "frequency": self.frequency,
            "max_papers": self.max_papers,
            "weekday": self.weekday,
            "timezone": self.timezone,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass
class ParsedFile:
    rows: list[ImportRow]
    problems: list[RowProblem]
    read: int  # data rows in the file


def decode(data: bytes) -> str:
    """The file's text: UTF-8, a byte-order mark dropped; OperatorError for anything else."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OperatorError(
            f"the file is not UTF-8 (byte {exc.start} cannot be read); save it as UTF-8 CSV"
        ) from exc


def parse_csv(data: bytes) -> ParsedFile:
    """Every data row of a subscriber CSV, checked; duplicates of an earlier row are problems.

    The header row is required: `email`, and any of the optional COLUMNS, in any order and case.
    A header that cannot work (no `email`, an unknown or repeated column) is an OperatorError.
    """
    # strict: a quote never closed is an error at the end of the file. Not strict, the csv
    # module read every line after it into that one field: a file with a stray quote on line 3
    # imported 2 of its 500 readers and reported one bad row, without a word about the rest.
    reader = csv.reader(io.StringIO(decode(data), newline=""), strict=True)
    return _rows(reader)


def _records(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its values); OperatorError naming that line if the rest of
    the file cannot be read as CSV (a quote left open, a cell past the csv module's limit)."""
    end = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise OperatorError(
                f"line {end + 1}: the file cannot be read as CSV from here ({exc}); is a quote left "
                "open? Nothing was imported."
            ) from exc
        yield end + 1, values
        end = reader.line_num


def _rows(reader: Any) -> ParsedFile:
    try:
        header = _header(next(reader, None))
    except csv.Error as exc:
        raise OperatorError(f"line 1: the header cannot be read as CSV ({exc})") from exc
    parsed = ParsedFile([], [], 0)
    first_line: dict[str, int] = {}
    for line, values in _records(reader):
        if not any(v.strip() for v in values):
            continue  # a blank line
        parsed.read += 1
        try:
            row = _row(line, header, values)
        except InvalidInput as exc:
            email = values[header.index("email")] if len(values) > header.index("email") else None
            parsed.problems.append(RowProblem(line=line, email=_shown(email), reason=str(exc)))
            continue
        if row.key in first_line:
            reason = f"the same address as line {first_line[row.key]}"
            parsed.problems.append(RowProblem(line=line, email=row.email, reason=reason))
            continue
        first_line[row.key] = line
        parsed.rows.append(row)
    return parsed


def _shown(value: str | None) -> str | None:
    """An address as the report may show it: one line, bounded."""
    return None if value is None else " ".join(value.split())[:320] or None


def _header(names: list[str] | None) -> list[str]:
    if names is None:
        raise OperatorError(
            "the file is empty; it needs a header row naming the columns, e.g. email,interests"
        )
    header = [n.strip().lower() for n in names]
    if "email" not in header:
        raise OperatorError(
            f"the header row has no 'email' column (found: {', '.join(header)}); "
            f"columns are {', '.join(COLUMNS)}"
        )
    for name in header:
        if name not in COLUMNS:
            raise OperatorError(f"unknown column {name!r}; columns are {', '.join(COLUMNS)}")
        if header.count(name) > 1:
            raise OperatorError(f"the column {name!r} appears twice in the header row")
    return header


def _row(line: int, header: list[str], values: list[str]) -> ImportRow:
    if len(values) > len(header):
        raise InvalidInput(f"{len(values)} values, but the header names {len(header)} columns")
    cells = dict(zip(header, values, strict=False))
    for name, value in cells.items():
        if "\r" in value or "\n" in value:
            raise InvalidInput(f"a line break inside the {name} field")
        if len(value) > MAX_FIELD:
            raise InvalidInput(f"the {name} field is longer than {MAX_FIELD} characters")
    address, key = normalise_email(cells.get("email", ""))
    return ImportRow(
        line=line,
        email=address,
        key=key,
        interests=_given(cells, "interests") and clean_interests(cells["interests"]),
        frequency=_frequency(_given(cells, "frequency")),
        max_papers=_max_papers(_given(cells, "max_papers")),
        weekday=_weekday(_given(cells, "weekday")),
        timezone=_timezone(_given(cells, "timezone")),
    )


def _given(cells: dict[str, str], name: str) -> str | None:
    value = cells.get(name, "").strip()
    return value or None


def _frequency(value: str | None) -> Frequency | None:
    if value is None:
        return None
    try:
        return Frequency(value.lower())
    except ValueError as exc:
        raise InvalidInput(f"frequency {value!r} is not weekly or daily") from exc


def _max_papers(value: str | None) -> int | None:
    if value is None:
        return None
    if not digits_only(value) or not 1 <= int(value) <= 50:
        raise InvalidInput(f"max_papers {value!r} is not a whole number from 1 to 50")
    return int(value)


def _weekday(value: str | None) -> int | None:
    """A weekday by name (monday, Mon) or number (0 = Monday … 6 = Sunday), as the preferences
    page takes it."""
    try:
        return clean_weekday(value)
    except InvalidInput as exc:
        raise InvalidInput(f"weekday {value!r}: {exc}") from exc


def _timezone(value: str | None) -> str | None:
    try:
        return clean_timezone(value)
    except InvalidInput as exc:
        raise InvalidInput(f"timezone {value!r}: {exc}") from exc
