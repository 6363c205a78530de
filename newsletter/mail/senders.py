"""Senders behind one small interface: SMTP for real (`mail/smtp.py`, our own client with
PIPELINING and a send in two phases), an outbox folder for the embedded default.

What a relay's replies mean (transient, permanent, the address or the message) is in
`mail/relay.py`; its names are importable from here too.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

from newsletter.config import Settings
from newsletter.domains import ascii_domain
from newsletter.mail.relay import (  # re-exported: senders are one place to import from
    MessageRefused,
    PermanentSendError,
    RecipientRefused,
    SendError,
    TransientSendError,
    about_address,
    envelope_recipient,
    envelope_sender,
)
from newsletter.mail.smtp import SMTPSender
from newsletter.validation import email_key

__all__ = [
    "MessageRefused",
    "OutboxSender",
    "PermanentSendError",
    "RecipientRefused",
    "SMTPSender",
    "SendError",
    "Sender",
    "TransientSendError",
    "about_address",
    "envelope_recipient",
    "envelope_sender",
    "forget_outbox_mail",
    "kept_sender",
    "open_sender",
]


class Sender(Protocol):
    """`send` a whole message; or `begin` it (everything the receiver does not accept yet) and
    then `end` it (it is accepted) or `abandon` it (it is not), with nothing else in between.
    `end` runs `meanwhile` (if given) while the receiver answers; it must not raise. `then`
    (recipient, envelope sender) names the next message's envelope, which a relay that
    pipelines gets right behind this one's end; the next `begin` must be for it to use that."""

    @property
    def connected(self) -> bool: ...

    def send(self, to: str, message: bytes, mail_from: str | None = None) -> None: ...

    def begin(self, to: str, message: bytes, mail_from: str | None = None) -> None: ...

    def end(
        self, meanwhile: Callable[[], None] | None = None, then: tuple[str, str | None] | None = None
    ) -> None: ...

    def abandon(self) -> None: ...

    def close(self) -> None: ...


class OutboxSender:
    """Writes each message as an .eml file; written whole or not at all, at `send` or `end`."""

    connected = True

    def __init__(self, settings: Settings) -> None:
        self.folder = Path(settings.outbox_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open: tuple[str, bytes] | None = None

    def send(self, to: str, message: bytes, mail_from: str | None = None) -> None:  # noqa: ARG002
        # A file has no envelope: the message is written as it would go out, without the sender.
        name = f"{time.time_ns()}-{os.getpid()}-{_slug(to)}.eml"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(message)
        tmp.rename(self.folder / name)

    def begin(self, to: str, message: bytes, mail_from: str | None = None) -> None:  # noqa: ARG002
        self._open = (to, message)

    def end(
        self,
        meanwhile: Callable[[], None] | None = None,
        then: tuple[str, str | None] | None = None,  # noqa: ARG002 - a file has no envelope
    ) -> None:
        if self._open is None:
            raise RuntimeError("no message is open")
        (to, message), self._open = self._open, None
        self.send(to, message)
        if meanwhile is not None:
            meanwhile()

    def abandon(self) -> None:
        self._open = None

    def close(self) -> None:
        self._open = None


def _slug(address: str) -> str:
    """The end of an outbox file's name: the recipient, readable, not necessarily unique."""
    return re.sub(r"[^a-zA-Z0-9]+", "_", address)[:60]


def _mailbox_key(address: str) -> str:
    """An address's lookup key (`validation.email_key`: lower case, never case-folded), its domain
    in IDNA form first (a named To: carries it so)."""
    local, _, domain = address.rpartition("@")
    return email_key(f"{local}@{ascii_domain(domain)}")


def forget_outbox_mail(folder: Path, address: str) -> int:
    """Delete the outbox files addressed to `address` (any case), for an erasure; returns how
    many. The file name's end narrows the search; the `To:` header decides, since two
    addresses can end in the same name ("a.b@x" and "a_b@x")."""
    if not folder.is_dir():
        return 0
    ending, wanted = f"-{_slug(address).casefold()}.eml", _mailbox_key(address)
    removed = 0
    for path in folder.iterdir():
        if not path.name.casefold().endswith(ending):
            continue
        try:  # the default policy reads a UTF-8 To: (SMTPUTF8) as text; compat32 made surrogates
            with path.open("rb") as f:
                to = [str(v) for v in BytesHeaderParser(policy=policy.default).parse(f).get_all("To", [])]
        except FileNotFoundError:  # deleted meanwhile (another erasure, the operator)
            continue
        if any(_mailbox_key(addr) == wanted for _, addr in getaddresses(to)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def open_sender(settings: Settings) -> Sender:
    """SMTP when a host is configured, the outbox folder otherwise."""
    return SMTPSender(settings) if settings.smtp_host else OutboxSender(settings)


# One kept connection per thread: in-process jobs run on the web server's worker threads, and two
# messages must never share a connection at once.
_LOCAL = threading.local()


def kept_sender(settings: Settings) -> Sender:
    """Like `open_sender`, but this thread's one SMTP connection for these settings, kept open
    between messages that come one at a time (journey emails: connect, EHLO and QUIT cost
    about 4 ms each). Never close it; a connection the relay closed while idle is opened again
    before anything is sent (`SMTPSender.kept`)."""
    if not settings.smtp_host:
        return OutboxSender(settings)
    s = settings
    key = (
        os.getpid(),
        s.smtp_host,
        s.smtp_port,
        s.smtp_username,
        s.smtp_password,
        s.smtp_starttls,
        s.smtp_tls,
    )
    kept: dict[tuple[object, ...], SMTPSender] = _LOCAL.__dict__.setdefault("kept", {})
    sender = kept.get(key)
    if sender is None or sender.settings.smtp_timeout != s.smtp_timeout:
        for stale in [k for k in kept if k[0] != key[0]]:  # inherited from a parent process
            del kept[stale]
        sender = kept[key] = SMTPSender(settings, kept=True)
    return sender
