"""One claimed row of a batch: its digest built, put on the wire up to the final `.` while the
previous row's "sent" commit is in flight, and ended only after that commit returned.

The order per row (`send_one`), with row i's UPDATE already on its way (`SentRecorder`):
1. build row i + 1's message (CPU);
2. `begin` it: MAIL, RCPT, DATA (one round trip where the relay pipelines) and the body, all
   but the final `.`: the relay accepts nothing yet;
3. collect row i's commit, and with it row i + 1's reader status and the issue's pause;
4. `end` it (write the `.`, read the 250) and send row i + 1's UPDATE without waiting; or, if the
   reader left or the issue paused meanwhile, `abandon` it (drop the connection before the `.`).
So a row is committed as sent before the next message can be accepted, and a killed worker
still repeats at most the one message whose `.` was written; but the commit's wait now overlaps
an SMTP round trip and the body's transfer instead of adding to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from newsletter.bounces import verp
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.digests import DigestRenderer
from newsletter.ledger import SentRecorder, finish
from newsletter.logs import event
from newsletter.mail.compose import digest_envelope, finish_message
from newsletter.mail.senders import (
    MessageRefused,
    PermanentSendError,
    RecipientRefused,
    Sender,
    SendError,
    TransientSendError,
)
from newsletter.models import DeliveryState, Subscriber, SubscriberStatus, utcnow
from newsletter.pauses import clear_refusals, count_refusal, pause_issue
from newsletter.subscriptions import mark_bounced

log = logging.getLogger("newsletter.delivery")


def digest_message(
    settings: Settings, renderer: DigestRenderer, sub: Subscriber, exclude: set[int]
) -> tuple[bytes, str, list[int]] | None:
    """The finished message for one reader, or None when nothing new is left to send them."""
    ranked = renderer.rank(sub, exclude)
    if not ranked:
        return None
    rendered = renderer.render(sub, renderer.items(sub, ranked))
    env = digest_envelope(settings, renderer.issue, sub, rendered.subject)
    message = finish_message(settings, env, *(rendered.pieces or (rendered.text, rendered.html)))
    return message, env.message_id, [r.paper_id for r in ranked]


@dataclass
class Batch:
    """What one batch run works with: its claim, connection, SMTP session and the issue's renderer."""

    conn: Connection
    settings: Settings
    issue_id: int
    owner: str
    renderer: DigestRenderer
    sender: Sender
    recorder: SentRecorder
    subscribers: dict[int, Subscriber]
    history: dict[int, set[int]]


def send_one(batch: Batch, delivery_id: int, sub_id: int, next_id: int | None) -> str:
    """Send one claimed row's digest; returns its outcome, "lost" if the row is not ours any
    more, or "paused" if the issue is (the row is left as it is)."""
    conn, owner, sub = batch.conn, batch.owner, batch.subscribers.get(sub_id)
    due = sub is not None and sub.status is SubscriberStatus.confirmed
    exclude = batch.history.get(sub_id, set())
    built = digest_message(batch.settings, batch.renderer, sub, exclude) if sub is not None and due else None
    begun = _begin(batch, delivery_id, sub, built[0]) if sub is not None and built is not None else None
    refusals = 0
    if sub is not None and due:
        # The batch's snapshot of the reader can be minutes old: ask again just before the `.`
        # (the answer comes with the previous row's commit).
        check = batch.recorder.check_row(delivery_id, owner)
        if check is None or check.paused:  # erased or swept as stale: not ours; or paused
            batch.sender.abandon()
            return "lost" if check is None else "paused"
        due, refusals = check.status is SubscriberStatus.confirmed, check.refusals
    batch.recorder.wait()
    if sub is None or not due:
        batch.sender.abandon()
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="no longer subscribed")
        return "skipped"
    if built is None:
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="nothing new to send")
        return "skipped"
    outcome = _end(batch, delivery_id, sub_id, begun)
    if outcome != "sent":
        return outcome
    if refusals:  # the refusals before this 250 were not in a row after all
        clear_refusals(conn, batch.issue_id)
    _, message_id, paper_ids = built
    batch.recorder.record_sent(
        delivery_id,
        owner,
        next_id,
        sent_at=utcnow(),
        smtp_code=250,
        message_id=message_id,
        paper_ids=paper_ids,
        error=None,
    )
    return "sent"


def _begin(batch: Batch, delivery_id: int, sub: Subscriber, message: bytes) -> SendError | None:
    """Everything of the message but its final `.`; the refusal, if the relay refused it."""
    return_path = verp.bounce_address(batch.settings, verp.DELIVERY, delivery_id, sub.token_key)
    try:
        batch.sender.begin(sub.email, message, mail_from=return_path)
    except SendError as exc:
        return exc
    return None


def _end(batch: Batch, delivery_id: int, sub_id: int, begun: SendError | None) -> str:
    """The `.` of a begun message, or the refusal `begin` met, as the row's outcome."""
    conn, owner = batch.conn, batch.owner
    try:
        if begun is not None:
            raise begun
        batch.sender.end()
    except PermanentSendError as exc:
        finish(conn, delivery_id, owner, DeliveryState.failed, smtp_code=exc.code, error=str(exc)[:1000])
        if isinstance(exc, RecipientRefused):  # only a refusal of the address is about the reader
            _bounce(batch.settings, sub_id, str(exc))
        elif isinstance(exc, MessageRefused):
            _count_refusal(batch, exc)
        return "failed"
    except TransientSendError as exc:
        finish(conn, delivery_id, owner, DeliveryState.deferred, smtp_code=exc.code, error=str(exc)[:1000])
        return "deferred"
    return "sent"


def _count_refusal(batch: Batch, exc: MessageRefused) -> None:
    """Count a refused message against the issue; pause it at `max_send_errors` in a row."""
    refused = count_refusal(batch.conn, batch.issue_id)
    if refused < batch.settings.max_send_errors:
        return
    reason = f"the relay refused {refused} messages in a row; the last: {exc}"
    if pause_issue(batch.conn, batch.issue_id, reason):
        event(log, "issue.paused", logging.ERROR, issue_id=batch.issue_id, refused=refused, reason=reason)


def _bounce(settings: Settings, subscriber_id: int, reason: str) -> None:
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is not None:
            mark_bounced(session, sub, reason)
