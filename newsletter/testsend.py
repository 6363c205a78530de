"""Test sends: the real digest for one reader (or some interests), mailed to an address the
operator names, through the configured sender (SMTP, DKIM and all), "[Test]" in the subject.

No ledger row and no issue are written: the digest is built like a preview, from this period's
candidate papers. Its links name no one (a fresh link key), so whoever receives the test
cannot unsubscribe or vote for the reader it was built for.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import OperatorError
from newsletter.mail.compose import digest_envelope, finish_message
from newsletter.mail.senders import SendError, open_sender
from newsletter.models import Frequency
from newsletter.previews import papers_sent_to, preview_reader, preview_renderer
from newsletter.validation import normalise_email

TEST_PREFIX = "[Test] "


class TestSendResult(BaseModel):
    """What went where: the address, the subject and Message-ID sent, how many papers."""

    __test__ = False  # not a pytest class, whatever its name

    to: str
    subject: str
    message_id: str
    papers: int
    built_for: str  # "subscriber <address>" or "interests: <text>"


def send_test(
    settings: Settings, to: str, *, subscriber: str | None = None, interests: str | None = None
) -> TestSendResult:
    """Build the digest for `subscriber` (their interests, learned profile, size and frequency)
    or for `interests`, and send it to `to` now. OperatorError for a bad address, an unknown
    subscriber, no papers this period, or a relay that refuses the message."""
    if subscriber and interests:
        raise OperatorError("give a subscriber or interests, not both")
    address, _ = normalise_email(to)
    now = settings.local_now()
    with session_scope(settings.database_url) as session:
        reader = preview_reader(session, settings, email=subscriber, interests=interests, own_links=False)
        frequency = reader.frequency if subscriber else Frequency.weekly
        renderer = preview_renderer(session, settings, frequency, now)
        sent = papers_sent_to(session, reader)
    ranked = renderer.rank(reader, sent)
    if not ranked:
        raise OperatorError("no papers to send this period: ingest some first (newsletter papers ingest)")
    rendered = renderer.render(reader, renderer.items(reader, ranked))
    envelope = digest_envelope(settings, renderer.issue, reader, TEST_PREFIX + rendered.subject)
    envelope = replace(envelope, to=address)
    message = finish_message(settings, envelope, rendered.text, rendered.html)
    _send(settings, address, message)
    return TestSendResult(
        to=address,
        subject=envelope.subject,
        message_id=envelope.message_id,
        papers=len(ranked),
        built_for=f"subscriber {reader.email}"
        if subscriber
        else f"interests: {reader.interests or '(none)'}",
    )


def _send(settings: Settings, address: str, message: bytes) -> None:
    sender = open_sender(settings)
    try:
        sender.send(address, message)
    except SendError as exc:
        raise OperatorError(f"the mail server did not take the test message: {exc}") from exc
    finally:
        sender.close()
