"""What a relay's replies mean, and the envelope's addresses; shared by every sender.

Errors are sorted the way RFC 5321 sorts them: 4xx replies, disconnects and timeouts are
transient (retry with backoff); 5xx replies are permanent (never retry). A permanent refusal is
about the address only when the relay refused the recipient (RCPT) for a reason that concerns
the mailbox (RFC 3463 `5.1.x`, or a plain 550/551/553); a refusal of the sender, of the message
at DATA, or for policy (`5.7.x`), size (`5.3.4`, 552) or anything else is about the message, and
says nothing about the reader.
"""

from __future__ import annotations

import re
from email.utils import parseaddr

import idna

from newsletter.config import Settings


class SendError(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientSendError(SendError):
    """Try again later: a 4xx reply, a dropped connection, a server that is not there."""


class PermanentSendError(SendError):
    """Do not try again: a 5xx reply, or a recipient this relay cannot take (no SMTPUTF8)."""


class RecipientRefused(PermanentSendError):
    """The relay refused the address itself (no such mailbox): a hard bounce for this reader."""


class MessageRefused(PermanentSendError):
    """The relay refused the sender or the message (policy, content, size, auth): not the
    reader's fault, and likely to happen to every message until someone fixes the cause."""


def envelope_sender(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1]


def envelope_recipient(to: str) -> str:
    """The RCPT TO address: an internationalised domain in its ASCII (A-label) form, so that
    ada@bücher.example needs no SMTPUTF8 from the relay; only a non-ASCII mailbox name does."""
    local, at, domain = to.rpartition("@")
    if to.isascii() or not at or not local.isascii():
        return to
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return to


_ENHANCED = re.compile(r"\s*5\.(\d{1,3})\.\d{1,3}\b")  # RFC 3463 class.subject.detail
_ADDRESS_CODES = (550, 551, 553)  # mailbox unavailable, user not local, mailbox name not allowed


def about_address(code: int, reply: str) -> bool:
    """Whether a 5xx reply to RCPT says the address itself is bad (a hard bounce).

    An enhanced status code decides when there is one: `5.1.x` (bad address) is; any other
    subject is not (`5.7.x` policy, `5.3.4` size, `5.2.x` a full or disabled mailbox, which can
    come back). `5.0.0` says nothing, so the basic code decides: 550, 551 or 553, never 552.
    """
    match = _ENHANCED.match(reply)
    if match and match[0].strip() != "5.0.0":
        return match[1] == "1"
    return code in _ADDRESS_CODES


def classify(code: int, text: bytes | str, *, recipient: bool = False) -> SendError:
    """The error for an SMTP reply; `recipient` if it answered RCPT TO."""
    msg = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    reply = f"{code} {msg}".strip()
    if not 500 <= code < 600:
        return TransientSendError(reply, code)
    if recipient and about_address(code, msg):
        return RecipientRefused(reply, code)
    return MessageRefused(reply, code)
