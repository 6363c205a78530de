"""The inbound mail endpoint: an SMTP (or LMTP) server for the bounce domain.

An MTA hands it the mail that comes back to our VERP envelope senders (`bounces+<token>@`),
mail to the List-Unsubscribe address (`unsubscribe+<token>@`), and feedback-loop reports (to
either, or to plain `bounces@`: the token is then read from the reported message). Any other
recipient is refused (550), a message over `inbound_max_bytes` too (552). A message changes
something only through a token we signed for a row that exists; everything else (forged,
replayed or old tokens, auto-replies, delay warnings, mail that is not a bounce, MIME that
cannot be read) is dropped with a log event and answered 250, so the MTA does not bounce the
bounce. A database that is away gets 451: the MTA tries again later.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from newsletter import ledger
from newsletter.bounces import verp
from newsletter.bounces.dsn import NOT_COMPLAINTS, Nature, complaint_type, is_autoreply, read_message, worst
from newsletter.bounces.events import BounceEvent, Outcome, record_bounce
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.logs import event as log_event
from newsletter.models import BounceKind, JourneyEmail, Subscriber

log = logging.getLogger("newsletter.inbound")
_NAMES = {verp.DELIVERY: "delivery_id", verp.JOURNEY: "journey_email_id", verp.UNSUBSCRIBE: "subscriber_id"}


def take_message(settings: Settings, recipient: str, raw: bytes) -> Outcome | str:
    """Read one message for one recipient of the bounce domain and record what it says; the
    Outcome, or why it was dropped (a word for the log and the tests). Commits its own work."""
    address = verp.parse_address(settings, recipient)
    if address is None:
        return "unknown-recipient"
    try:
        msg = message_from_bytes(raw, policy=policy.default)
        built = _event_for(settings, address[0], address[1], msg)
    except (ValueError, TypeError, LookupError, IndexError, AttributeError, RecursionError) as exc:
        _dropped("malformed", raw, error=type(exc).__name__)  # RecursionError: MIME nested 2,000 deep
        return "malformed"
    if isinstance(built, str):
        _dropped(built, raw)
        return built
    token, event = built
    with session_scope(settings.database_url) as session:
        ids = _verified(session, settings, token)
        if ids is None:
            _dropped("forged", raw, kind=token.kind)
            return "forged"
        return record_bounce(session, settings, BounceEvent(**{**event, **ids}))


def _dropped(why: str, raw: bytes, **fields: Any) -> None:
    log_event(log, f"inbound.{why}", logging.WARNING, size=len(raw), digest=verp.digest_of(raw), **fields)


def _event_for(
    settings: Settings, prefix: str, token: verp.VerpToken | None, msg: EmailMessage
) -> tuple[verp.VerpToken, dict[str, Any]] | str:
    """The (unverified) token and the event a message makes, or why it makes none."""
    if prefix == verp.UNSUBSCRIBE_PREFIX:
        if token and read_message(msg).nature is Nature.arf:  # a feedback loop that used our mailto:
            feedback = complaint_type(msg)
            complaint = feedback not in NOT_COMPLAINTS
            return (token, {"kind": BounceKind.complaint, "source": "arf"}) if complaint else feedback
        if is_autoreply(msg) or msg.get_content_type() == "multipart/report":
            return "autoreply"  # an out-of-office must never unsubscribe anyone
        return (token, {"kind": BounceKind.unsubscribe, "source": "mailto"}) if token else "forged"
    reading = read_message(msg)
    if reading.nature is Nature.arf:
        if (feedback := complaint_type(msg)) in NOT_COMPLAINTS:
            return feedback
        token = token or _token_in(settings, reading.original)
        return (token, {"kind": BounceKind.complaint, "source": "arf"}) if token else "forged"
    if reading.nature is not Nature.dsn:
        return reading.nature.value  # autoreply, warning, other
    finding = worst(reading.findings)
    token = token or _token_in(settings, reading.original)
    if finding is None or token is None or token.kind == verp.UNSUBSCRIBE:
        return "forged"
    event = {"kind": finding.kind, "address": finding.address, "status": finding.status}
    return token, {**event, "diagnostic": finding.diagnostic, "source": "dsn"}


def _token_in(settings: Settings, original: Message | None) -> verp.VerpToken | None:
    """A token of ours in the reported message: its Return-Path (the VERP address as the
    receiving MTA recorded it), else the mailto: of its List-Unsubscribe."""
    if original is None:
        return None
    candidates = [str(original.get("Return-Path", ""))]
    candidates += [
        part.strip().strip("<>").removeprefix("mailto:")
        for part in str(original.get("List-Unsubscribe", "")).split(",")
    ]
    for candidate in candidates:
        found = verp.parse_address(settings, candidate.split("?", 1)[0]) if "@" in candidate else None
        if found is not None and found[1] is not None:
            return found[1]
    return None


def _verified(session: Session, settings: Settings, token: verp.VerpToken) -> dict[str, int] | None:
    """{delivery_id | journey_email_id | subscriber_id: id} if we signed `token` for a row that
    exists; None otherwise (forged, altered, too old, or the row is gone)."""
    for ident, secrets in verp.readings(settings, token):
        days, sub = settings.bounce_token_days, None
        if token.kind == verp.DELIVERY:
            owner = ledger.delivery_owner(session, ident)
            sub = session.get(Subscriber, owner[1]) if owner else None
            bound = sub.token_key if sub else ""
        elif token.kind == verp.JOURNEY:
            email = session.get(JourneyEmail, ident)
            sub = session.get(Subscriber, email.subscriber_id) if email else None
            bound = sub.token_key if sub else ""
        else:
            sub, days = session.get(Subscriber, ident), settings.link_token_days
            bound = f"{sub.token_key}|{sub.token_version}" if sub else ""
        if sub is not None and verp.signed_by(token, ident, bound, days, secrets):
            return {_NAMES[token.kind]: ident}
    return None


class InboundHandler:
    """aiosmtpd's hooks: refuse other recipients at RCPT; read each message in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if verp.parse_address(self.settings, address) is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        """SMTP: one answer for the message, the first failure if any recipient's fails. LMTP
        (RFC 2033 §4.2): one answer per accepted recipient, in order, each for its own."""
        raw = envelope.original_content or envelope.content
        if isinstance(server, LMTP):
            return "\r\n".join([await self._take(rcpt, raw) for rcpt in envelope.rcpt_tos])
        for rcpt in envelope.rcpt_tos:
            reply = await self._take(rcpt, raw)
            if not reply.startswith("250"):
                return reply
        return "250 OK"

    async def _take(self, rcpt: str, raw: bytes) -> str:
        try:
            await asyncio.get_running_loop().run_in_executor(None, take_message, self.settings, rcpt, raw)
        except DBAPIError as exc:
            log_event(log, "inbound.db_unavailable", logging.ERROR, error=str(exc)[:200])
            return "451 4.3.0 Cannot record this now; try again later"
        except Exception as exc:  # a bug must not stop the server; the MTA is told, nothing changed
            log_event(log, "inbound.error", logging.ERROR, error=repr(exc)[:200])
            return "554 5.6.0 Cannot read this message"
        return "250 OK"


class _LMTPController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


def start(settings: Settings, host: str, port: int, lmtp: bool = False) -> Controller:
    """Start the endpoint in a background thread; `.stop()` the returned controller."""
    kind = _LMTPController if lmtp else Controller
    controller = kind(
        InboundHandler(settings),
        hostname=host,
        port=port,
        data_size_limit=settings.inbound_max_bytes,
        server_hostname=settings.verp_domain,
    )
    controller.start()
    return controller


def serve(settings: Settings, host: str, port: int, lmtp: bool = False) -> None:
    """Run the endpoint until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    controller = start(settings, host, port, lmtp)
    log_event(log, "inbound.listening", host=host, port=port, domain=settings.verp_domain, lmtp=lmtp)
    try:
        stop.wait()
    finally:
        controller.stop()
