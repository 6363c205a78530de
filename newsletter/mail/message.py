"""Build RFC 5322 multipart/alternative messages as bytes, and optionally DKIM-sign them.

The digest path builds tens of thousands of messages, and `email.message.EmailMessage` spends
~4.5 ms on a 30 KB message, so this writes the MIME structure directly: quoted-printable bodies
(C-accelerated `binascii`), RFC 2047 encoded headers where needed, CRLF line endings. Tests parse
the result with the standard library's parser to hold it to the same structure.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formatdate, make_msgid
from functools import lru_cache
from pathlib import Path

CRLF = b"\r\n"


@dataclass
class Envelope:
    """Everything but the bodies: who, subject, and the extra headers."""

    mail_from: str
    to: str
    subject: str
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
    date: str | None = None


def new_message_id(domain: str, idstring: str | None = None) -> str:
    """A unique Message-ID; `idstring` (e.g. "issue.subscriber") helps match bounces to rows."""
    return make_msgid(idstring=idstring, domain=domain)


def _header_value(value: str, name: str) -> bytes:
    if any(ch in value for ch in "\r\n"):
        raise ValueError(f"header {name} contains a line break")
    if value.isascii() and len(value) + len(name) < 900:
        return value.encode("ascii")
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n").encode("ascii")


def _address_value(value: str, name: str) -> bytes:
    """From/To: encode a non-ASCII display name, keep the address itself as is."""
    if any(ch in value for ch in "\r\n"):
        raise ValueError(f"header {name} contains a line break")
    if value.isascii():
        return value.encode("ascii")
    if "<" in value:
        display, addr = value.rsplit("<", 1)
        encoded = Header(display.strip().strip('"'), "utf-8").encode()
        return f"{encoded} <{addr}".encode("utf-8")
    return value.encode("utf-8")  # an internationalised address: needs SMTPUTF8


def _qp(text: str) -> bytes:
    body = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    return body.replace(b"\r\n", b"\n").replace(b"\n", CRLF)


def build_message(env: Envelope, text: str, html: str) -> bytes:
    """A multipart/alternative message (text first, HTML preferred last), CRLF-terminated."""
    boundary = "=_pd_" + secrets.token_hex(12)
    head = [
        (b"From", _address_value(env.mail_from, "From")),
        (b"To", _address_value(env.to, "To")),
        (b"Subject", _header_value(env.subject, "Subject")),
        (b"Date", (env.date or formatdate(usegmt=True)).encode("ascii")),
        (b"Message-ID", env.message_id.encode("ascii")),
        (b"MIME-Version", b"1.0"),
    ]
    head += [(k.encode("ascii"), _header_value(v, k)) for k, v in env.headers.items()]
    head.append((b"Content-Type",
                 f'multipart/alternative; boundary="{boundary}"'.encode("ascii")))
    b = boundary.encode("ascii")
    parts = [k + b": " + v for k, v in head]
    parts += [b"", b"This is a multipart message in MIME format.", b"", b"--" + b,
              b'Content-Type: text/plain; charset="utf-8"',
              b"Content-Transfer-Encoding: quoted-printable", b"", _qp(text), b"--" + b,
              b'Content-Type: text/html; charset="utf-8"',
              b"Content-Transfer-Encoding: quoted-printable", b"", _qp(html),
              b"--" + b + b"--", b""]
    return CRLF.join(parts)


DKIM_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                b"content-type", b"list-id", b"list-unsubscribe", b"list-unsubscribe-post"]


@lru_cache(maxsize=4)
def _dkim_key(path: str) -> bytes:
    return Path(path).read_bytes()


def dkim_sign(message: bytes, *, selector: str, domain: str, key_path: str | Path) -> bytes:
    """Prepend a DKIM-Signature covering From and both List-Unsubscribe headers (RFC 8058 §4)."""
    import dkim

    present = {line.split(b":", 1)[0].strip().lower()
               for line in message.split(b"\r\n\r\n", 1)[0].split(CRLF) if b":" in line}
    headers = [h for h in DKIM_HEADERS if h in present]
    sig = dkim.sign(message, selector.encode(), domain.encode(), _dkim_key(str(key_path)),
                    include_headers=headers, canonicalize=(b"relaxed", b"simple"))
    return sig + message
