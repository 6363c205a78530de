"""Senders behind one small interface: SMTP for real, an outbox folder for the embedded default.

Errors are sorted the way RFC 5321 sorts them: 4xx replies, disconnects and timeouts are
transient (retry with backoff); 5xx replies are permanent (never retry, mark the address).
"""

from __future__ import annotations

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
    """Do not try again: a 5xx reply for this recipient."""


class Sender(Protocol):
    connected: bool

    def send(self, to: str, message: bytes) -> None: ...

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


def _classify(code: int, text: bytes | str) -> SendError:
    msg = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    cls = PermanentSendError if 500 <= code < 600 else TransientSendError
    return cls(f"{code} {msg}".strip(), code)


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

    def send(self, to: str, message: bytes) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        rcpt = envelope_recipient(to)
        options = [] if rcpt.isascii() else ["SMTPUTF8"]
        try:
            self._smtp.sendmail(self.sender, [rcpt], message, mail_options=options)
        except smtplib.SMTPNotSupportedError as exc:
            # A non-ASCII mailbox name and a relay without SMTPUTF8: no retry can fix that, and
            # the connection is fine for the rest of the batch.
            raise PermanentSendError(f"cannot send to {to}: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._drop_if(code)
            raise _classify(code, text) from exc
        except smtplib.SMTPResponseException as exc:
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
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()


class OutboxSender:
    """Writes each message as an .eml file; written whole or not at all."""

    connected = True

    def __init__(self, settings: Settings) -> None:
        self.folder = Path(settings.outbox_dir)
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, to: str, message: bytes) -> None:
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
