"""Senders behind one small interface: SMTP for real, an outbox folder for the embedded default.

Errors are sorted the way RFC 5321 sorts them: 4xx replies, disconnects and timeouts are
transient (retry with backoff); 5xx replies are permanent (never retry). A permanent refusal is
about the address only when the relay refused the recipient (RCPT) for a reason that concerns
the mailbox (RFC 3463 `5.1.x`, or a plain 550/551/553); a refusal of the sender, of the message
at DATA, or for policy (`5.7.x`), size (`5.3.4`, 552) or anything else is about the message, and
says nothing about the reader.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import ssl
import time
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol

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


class Sender(Protocol):
    @property
    def connected(self) -> bool: ...

    def send(self, to: str, message: bytes, mail_from: str | None = None) -> None: ...

    def close(self) -> None: ...


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


def _classify(code: int, text: bytes | str, *, recipient: bool = False) -> SendError:
    """The error for an SMTP reply; `recipient` if it answered RCPT TO."""
    msg = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    reply = f"{code} {msg}".strip()
    if not 500 <= code < 600:
        return TransientSendError(reply, code)
    if recipient and about_address(code, msg):
        return RecipientRefused(reply, code)
    return MessageRefused(reply, code)


class SMTPSender:
    """One SMTP connection, opened on first use and reused for every message of a batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sender = envelope_sender(settings)
        self._smtp: smtplib.SMTP | None = None

    @property
    def connected(self) -> bool:
        return self._smtp is not None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if not s.smtp_host:  # open_sender picks SMTP only when a host is set
            raise TransientSendError(
                f"cannot connect to {s.smtp_host}:{s.smtp_port}: no SMTP host configured"
            )
        try:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
            smtp.ehlo()
            if s.smtp_starttls:
                # Without a context smtplib does not verify the certificate (cpython#91826).
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, exc.smtp_error) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientSendError(f"cannot connect to {s.smtp_host}:{s.smtp_port}: {exc}") from exc
        return smtp

    def send(self, to: str, message: bytes, mail_from: str | None = None) -> None:
        """Send one message; `mail_from` is its envelope sender (a VERP address), by default the
        address of `mail_from` in the settings."""
        if self._smtp is None:
            self._smtp = self._connect()
        rcpt = envelope_recipient(to)
        options = [] if rcpt.isascii() else ["SMTPUTF8"]
        try:
            self._smtp.sendmail(mail_from or self.sender, [rcpt], message, mail_options=options)
        except smtplib.SMTPNotSupportedError as exc:
            # A non-ASCII mailbox name and a relay without SMTPUTF8: no retry can fix that, and
            # the connection is fine for the rest of the batch. The relay, not the mailbox, is
            # what falls short, so this is neither a bounce nor a refusal of the message.
            raise PermanentSendError(f"cannot send to {to}: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._drop_if(code)
            raise _classify(code, text, recipient=True) from exc
        except smtplib.SMTPResponseException as exc:  # MAIL FROM (SMTPSenderRefused) or DATA
            self._drop_if(exc.smtp_code)
            raise _classify(exc.smtp_code, exc.smtp_error) from exc
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise TransientSendError(f"connection lost: {exc}") from exc
        except smtplib.SMTPException as exc:
            self._drop()
            raise TransientSendError(str(exc)) from exc

    def _drop_if(self, code: int) -> None:
        if code == 421:  # the server is closing the connection
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._drop()


class OutboxSender:
    """Writes each message as an .eml file; written whole or not at all."""

    connected = True

    def __init__(self, settings: Settings) -> None:
        self.folder = Path(settings.outbox_dir)
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, to: str, message: bytes, mail_from: str | None = None) -> None:  # noqa: ARG002
        # A file has no envelope: the message is written as it would go out, without the sender.
        slug = re.sub(r"[^a-zA-Z0-9]+", "_", to)[:60]
        name = f"{time.time_ns()}-{os.getpid()}-{slug}.eml"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(message)
        tmp.rename(self.folder / name)

    def close(self) -> None:
        pass


def open_sender(settings: Settings) -> Sender:
    """SMTP when a host is configured, the outbox folder otherwise."""
    return SMTPSender(settings) if settings.smtp_host else OutboxSender(settings)
