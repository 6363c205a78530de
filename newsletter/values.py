"""Small helpers for text and dates shared by papers, ranking and digests (standard library only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


class JSONTooDeep(ValueError):
    """JSON nested past the interpreter's recursion limit (`[[[[…`): malformed like any other."""


def load_json(data: str | bytes) -> Any:
    """`json.loads`, except that JSON nested too deeply to read is a ValueError (JSONTooDeep)
    like any other malformed JSON, not a RecursionError that escapes every `except ValueError`."""
    try:
        return json.loads(data)
    except RecursionError:
        raise JSONTooDeep("JSON nested too deeply to read") from None


def shorten(text: str, width: int, *, one_line: bool = False, at_word: bool = False) -> str:
    """`text` unchanged if it fits in `width` characters, else cut and ended with "…".

    With `one_line`, whitespace runs (line breaks included) first become one space. By default
    the cut keeps `width - 1` characters, trailing spaces dropped, so the result fits in `width`.
    With `at_word` it falls on the last space within the first `width` characters instead, and
    drops the punctuation (,.;:) left before the "…".
    """
    if one_line:
        text = " ".join(text.split())
    if len(text) <= width:
        return text
    if at_word:
        return text[:width].rsplit(" ", 1)[0].rstrip(",.;:") + "…"
    return text[: width - 1].rstrip() + "…"


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; a naive one is taken to be UTC already.

    Raises ValueError if the conversion leaves the range of `datetime`.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"date is out of range: {value.isoformat()}") from None


def digits_only(text: str) -> bool:
    """Whether `text` is a non-empty run of ASCII digits 0-9, which int() reads. str.isdigit()
    also takes superscripts and other digits ("²"), on which int() raises ValueError."""
    return text.isascii() and text.isdigit()
