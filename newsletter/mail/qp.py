"""Quoted-printable bodies with CRLF line ends, without encoding the same text twice.

A digest's text is mostly the same for every reader: only the links, the address and the reasons
differ. `qp_pieces(pieces)` takes the text as the assembler builds it: the issue's literal pieces
(`Literal`, encoded once per issue) with the reader's values between. Each piece starts a line
of the encoding, after a soft line break, so only the values are encoded per message (a plain
link, as itself). Other bytes than encoding the whole text at once (`qp_whole`, which the
journey emails use), the same text once decoded; tests hold it to that and to RFC 2045's rules
(76 characters a line, printable US-ASCII, no white space at the end of a line).
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from functools import lru_cache

CRLF = b"\r\n"


def qp_whole(text: str) -> bytes:
    """The plain way: the whole text in one call."""
    body = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    return body.replace(b"\r\n", b"\n").replace(b"\n", CRLF)


SOFT_BREAK = b"=\r\n"
MAX_LINE = 76  # characters of an encoded line, a soft line break's "=" included


def _open_ended(text: str) -> bytes:
    """`text` encoded so that a soft line break ("=") fits after its last line."""
    if text.isascii() and text.isprintable() and "=" not in text:  # written as itself: a link, say
        raw = text.encode("ascii")
        if len(raw) < MAX_LINE:
            return raw
        return SOFT_BREAK.join([raw[i : i + MAX_LINE - 1] for i in range(0, len(raw), MAX_LINE - 1)])
    return _encoded_open_ended(text)


@lru_cache(maxsize=4096)  # "why" lines and headings repeat from reader to reader
def _encoded_open_ended(text: str) -> bytes:
    encoded = qp_whole(text)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start < MAX_LINE:
        return encoded
    cut = MAX_LINE - 1 + start  # the last line is 76 long: break it before its last 1-3 characters
    while b"=" in encoded[cut - 2 : cut]:  # not inside an "=XX"
        cut -= 1
    return encoded[:cut] + SOFT_BREAK + encoded[cut:]


class Literal:
    """A piece of text that many messages share, encoded once (`encoded`)."""

    __slots__ = ("text", "encoded", "soft_break")

    def __init__(self, text: str) -> None:
        self.text = text
        self.encoded = _open_ended(text)
        # What follows it: its own next line, or a soft line break back to the first column
        self.soft_break = SOFT_BREAK if text and not text.endswith("\n") else b""

    def __repr__(self) -> str:
        return f"Literal({self.text!r})"


NEWLINE = Literal("\n")

# A text as the assembler builds it: literals, with plain strings (a reader's values) between.
Pieces = list[str | Literal]


def pieces_text(pieces: Iterable[str | Literal]) -> str:
    """The text the pieces make."""
    return "".join([p if type(p) is str else p.text for p in pieces])  # type: ignore[union-attr]


def qp_pieces(pieces: Pieces) -> bytes:
    """The pieces joined, quoted-printable (RFC 2045 §6.7): each piece starts a line of its own in
    the encoding, ended by a soft line break if it does not end a line of the text, so the
    literals are encoded once per issue, not once per message, and only the values per message.
    It decodes to `pieces_text(pieces)`, with no line over 76 characters; its bytes differ from
    `qp_whole`'s, which breaks lines only where they grow too long."""
    out: list[bytes] = []
    for piece in pieces:
        if type(piece) is str:
            if piece:
                out += (_open_ended(piece), SOFT_BREAK if piece[-1] != "\n" else b"")
        else:
            out += (piece.encoded, piece.soft_break)  # type: ignore[union-attr]
    return b"".join(out)
