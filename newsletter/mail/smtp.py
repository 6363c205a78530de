"""An SMTP client of our own: ESMTP PIPELINING (RFC 2920) and a send in two phases.

`begin` sends a message's envelope and its dot-stuffed body, everything but the final `.` line;
`end` writes that `.` and reads the relay's answer. A relay accepts nothing before the `.`
(RFC 5321 4.1.1.4), so a caller can get the next message on the wire while something else (the
ledger's commit of the previous one) is still in flight, and decide only then whether it goes
out: `end`, or `abandon`, which drops the connection so that the relay discards the half-sent
message. Where the relay advertises PIPELINING, MAIL, RCPT and DATA go out in one write and
their three replies are read together (one round trip instead of three); elsewhere one by one.

It replaces smtplib, and keeps what the sender relied on: EHLO (HELO if refused), STARTTLS with a
verifying context, AUTH (CRAM-MD5, PLAIN, LOGIN, in smtplib's order), SIZE=, SMTPUTF8 for a
non-ASCII mailbox, RSET after a refused transaction, a 421 closing the connection, and the body
dot-stuffed exactly as `smtplib.SMTP.sendmail` writes it.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import socket
import ssl
from collections.abc import Callable
from functools import cache
from typing import BinaryIO, NamedTuple

from newsletter.config import Settings
from newsletter.mail.relay import (
    PermanentSendError,
    SendError,
    TransientSendError,
    classify,
    envelope_recipient,
    envelope_sender,
)

CRLF = b"\r\n"
_MAXLINE = 8192  # as smtplib: a reply line longer than this is not SMTP
_GOOD = ((250,), (250, 251), (354,))  # the replies that let MAIL, RCPT, DATA go on


class Reply(NamedTuple):
    code: int
    text: bytes


def dot_stuffed(message: bytes) -> bytes:
    """The bytes after DATA as smtplib writes them, without the final `.` line: a `.` starting a
    line doubled, and the last line ended with CRLF."""
    # What smtplib's `re.sub(rb"(?m)^\.", b"..", …)` does, as two C calls: `^` matches at the
    # start and after each LF, and quoted-printable digests have such lines in most messages.
    if message.startswith(b"."):
        message = b"." + message
    message = message.replace(b"\n.", b"\n..")
    return message if message.endswith(CRLF) else message + CRLF


@cache
def local_name() -> str:
    """The name this host gives in EHLO (smtplib's default), looked up once per process."""
    return socket.getfqdn()


class SMTPSender:
    """One SMTP connection, opened on first use and reused for every message of a batch."""

    def __init__(self, settings: Settings, *, kept: bool = False) -> None:
        self.settings = settings
        self.kept = kept  # kept open between messages that come one by one (see `begin`)
        self.sender = envelope_sender(settings)
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self.extensions: dict[str, str] = {}
        self._open = False  # a message begun whose final `.` is not written yet
        # An envelope written behind the last `.` (`end`'s `then`), its replies not read yet:
        # ((recipient, envelope sender), its commands).
        self._pending: tuple[tuple[str, str | None], list[str]] | None = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def pipelining(self) -> bool:
        return "pipelining" in self.extensions

    # ---- sending ----------------------------------------------------------------------------

    def send(self, to: str, message: bytes, mail_from: str | None = None) -> None:
        """Send one message; `mail_from` is its envelope sender (a VERP address), by default the
        address of `mail_from` in the settings."""
        self.begin(to, message, mail_from)
        self.end()

    def begin(self, to: str, message: bytes, mail_from: str | None = None) -> None:
        """Everything of `send` up to the final `.`: the envelope, DATA and the body. Raises the
        errors `send` raises for the envelope; the message is open until `end` or `abandon`.
        If the previous `end` already sent this envelope (`then`), only its replies are read."""
        pending, self._pending = self._pending, None
        if self._open or (pending is not None and pending[0] != (to, mail_from)):
            # A message left open by an error between begin and end must never be ended, and an
            # envelope sent ahead for another message has a data phase only a `.` would close.
            self._drop()
            pending = None
        reused = self._sock is not None
        if not reused:
            self._connect()
        commands = pending[1] if pending is not None else self._commands(to, mail_from, len(message))
        try:
            try:
                self._envelope(commands, written=pending is not None)
            except OSError:
                if not (reused and self.kept and pending is None):
                    raise
                # A kept connection the relay closed while it was idle; nothing was accepted.
                self._drop()
                self._connect()
                self._envelope(commands)
            self._write(dot_stuffed(message))
        except OSError as exc:
            self._drop()
            raise TransientSendError(f"connection lost: {exc}") from exc

    def _commands(self, to: str, mail_from: str | None, size: int | None) -> list[str]:
        """MAIL, RCPT and DATA for one message (SIZE= where the relay takes it and it is known)."""
        rcpt = envelope_recipient(to)
        mail = f"MAIL FROM:<{mail_from or self.sender}>"
        if size is not None and "size" in self.extensions:
            mail += f" SIZE={size}"
        if not rcpt.isascii():
            if "smtputf8" not in self.extensions:
                # The relay, not the mailbox, falls short: neither a bounce nor a refused message,
                # and the connection is fine for the rest of the batch.
                raise PermanentSendError(f"cannot send to {to}: SMTPUTF8 not supported by server")
            mail += " SMTPUTF8"
        return [mail, f"RCPT TO:<{rcpt}>", "DATA"]

    def end(
        self, meanwhile: Callable[[], None] | None = None, then: tuple[str, str | None] | None = None
    ) -> None:
        """Write the open message's final `.` and read the relay's answer to it; `meanwhile`
        (work of our own, such as building the next message) runs while the relay takes the
        message in and answers, instead of after.

        `then` (recipient, envelope sender) is the next message's envelope: where the relay
        pipelines, its MAIL, RCPT and DATA go out right behind the `.` (RFC 2920 allows a
        message's content to open a group), without SIZE= since that message may not be built
        yet, and the next `begin` for that envelope only reads their replies. One round trip per
        message instead of two; the next `.` still waits for `begin` and `end` as before."""
        if not self._open:
            raise RuntimeError("no message is open")
        self._open = False
        data, pending = b"." + CRLF, None
        if then is not None and self.pipelining:
            with contextlib.suppress(SendError):  # not sendable ahead: `begin` says why, in turn
                pending = (then, self._commands(*then, size=None))
                data += b"".join(c.encode() + CRLF for c in pending[1])
        try:
            self._write(data)
            self._pending = pending
            if meanwhile is not None:
                meanwhile()
            reply = self._reply()
        except OSError as exc:
            self._drop()
            raise TransientSendError(f"connection lost: {exc}") from exc
        if reply.code != 250:
            self._drop_if(reply.code)
            raise classify(*reply)

    def abandon(self) -> None:
        """Leave the open message unsent: close the connection before its `.` (and before the
        `.` of a data phase an envelope sent ahead may have opened)."""
        if self._open or self._pending is not None:
            self._drop()

    def _envelope(self, commands: list[str], written: bool = False) -> None:
        """MAIL, RCPT and DATA, in one write where the relay pipelines (or already `written`,
        behind the previous `.`); raises for a refusal, after putting the connection back in a
        state for the next message."""
        replies: list[Reply] = []
        self._open = True  # from here until the `.` or a clean refusal, the connection is the message's
        if self.pipelining and not written:
            self._write(b"".join(c.encode() + CRLF for c in commands))
        for i, command in enumerate(commands):
            if not self.pipelining:
                self._write(command.encode() + CRLF)
            try:
                replies.append(self._reply())
            except OSError:
                if not any(r.code not in _GOOD[j] for j, r in enumerate(replies)):
                    raise
                break  # a relay that refused and hung up (421): its refusal is the answer
            if not self.pipelining and replies[-1].code not in _GOOD[i]:
                break
        for i, reply in enumerate(replies):
            if reply.code not in _GOOD[i]:
                self._unwind(replies)
                self._open = False
                raise classify(*reply, recipient=i == 1)

    def _unwind(self, replies: list[Reply]) -> None:
        """After a refused MAIL, RCPT or DATA: end a data phase the relay opened anyway with an
        empty message (RFC 2920 section 3.1), then RSET; or drop the connection on a 421."""
        if any(r.code == 421 for r in replies):
            self._drop()
            return
        try:
            if replies[-1].code == 354:
                self._write(b"." + CRLF)
                self._reply()
            self._write(b"RSET" + CRLF)
            self._reply()
        except OSError:
            self._drop()

    def _drop_if(self, code: int) -> None:
        if code == 421:  # the server is closing the connection
            self._drop()

    # ---- the connection ---------------------------------------------------------------------

    def _connect(self) -> None:
        s = self.settings
        if not s.smtp_host:  # open_sender picks SMTP only when a host is set
            raise TransientSendError(f"cannot connect to {s.smtp_host}:{s.smtp_port}: no SMTP host set")
        try:
            sock = socket.create_connection((s.smtp_host, s.smtp_port), timeout=s.smtp_timeout)
            if s.smtp_tls:  # implicit TLS (RFC 8314): the handshake comes before the greeting
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=s.smtp_host)
            self._attach(sock)
            self._expect(self._reply(), 220)
            self._hello()
            if s.smtp_starttls:
                self._starttls(s.smtp_host)
            if s.smtp_username:
                self._login(s.smtp_username, s.smtp_password or "")
        except SendError:
            self._drop()
            raise
        except OSError as exc:
            self._drop()
            raise TransientSendError(f"cannot connect to {s.smtp_host}:{s.smtp_port}: {exc}") from exc

    def _attach(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # not every socket is TCP (a test may use a pair)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the `.` is one small write
        self._sock, self._file = sock, sock.makefile("rb")

    def _hello(self) -> None:
        reply = self._command(f"EHLO {local_name()}")
        self.extensions = {}
        if reply.code != 250:
            self._expect(self._command(f"HELO {local_name()}"), 250)
            return
        for line in reply.text.split(b"\n")[1:]:
            name, _, params = line.decode("ascii", "replace").strip().partition(" ")
            self.extensions[name.lower()] = params

    def _starttls(self, host: str) -> None:
        if "starttls" not in self.extensions:
            raise TransientSendError(f"cannot connect to {host}: STARTTLS not supported by server")
        self._expect(self._command("STARTTLS"), 220)
        assert self._sock is not None and self._file is not None
        self._file.close()
        self._attach(ssl.create_default_context().wrap_socket(self._sock, server_hostname=host))
        self._hello()

    def _login(self, user: str, password: str) -> None:
        offered = self.extensions.get("auth", "").upper().split()
        methods = [m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in offered]
        if not methods:
            raise TransientSendError("cannot log in: the server offers no AUTH method we know")
        reply = Reply(0, b"")
        for method in methods:
            reply = self._auth(method, user, password)
            if reply.code in (235, 503):  # 503: already authenticated
                return
        raise classify(*reply)

    def _auth(self, method: str, user: str, password: str) -> Reply:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        if method == "PLAIN":
            plain = b"\0".join((b"", user.encode(), password.encode()))
            return self._command(f"AUTH PLAIN {b64(plain)}")
        if method == "LOGIN":
            reply = self._command(f"AUTH LOGIN {b64(user.encode())}")
            return self._command(b64(password.encode())) if reply.code == 334 else reply
        reply = self._command("AUTH CRAM-MD5")
        if reply.code != 334:
            return reply
        digest = hmac.new(password.encode(), base64.b64decode(reply.text), "md5").hexdigest()
        return self._command(b64(f"{user} {digest}".encode()))

    def _command(self, line: str) -> Reply:
        self._write(line.encode() + CRLF)
        return self._reply()

    @staticmethod
    def _expect(reply: Reply, code: int) -> None:
        if reply.code != code:
            raise classify(*reply)

    def _write(self, data: bytes) -> None:
        if self._sock is None:
            raise ConnectionError("not connected")
        self._sock.sendall(data)

    def _reply(self) -> Reply:
        """One reply, its lines joined with LF as smtplib joins them."""
        if self._file is None:
            raise ConnectionError("not connected")
        lines = []
        while True:
            line = self._file.readline(_MAXLINE + 1)
            if not line:
                raise ConnectionError("connection unexpectedly closed")
            if len(line) > _MAXLINE:
                raise ConnectionError("reply line too long")
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                break
        try:
            code = int(line[:3])
        except ValueError:
            code = -1
        return Reply(code, b"\n".join(lines))

    def _drop(self) -> None:
        self._open, self._pending = False, None
        file, sock, self._file, self._sock = self._file, self._sock, None, None
        self.extensions = {}
        with contextlib.suppress(OSError):
            if file is not None:
                file.close()
            if sock is not None:
                sock.close()

    def close(self) -> None:
        """QUIT and close; a message still open is abandoned (never ended by the QUIT)."""
        self.abandon()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._command("QUIT")
            self._drop()
