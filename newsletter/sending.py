"""One claimed row of a batch: its digest built, put on the wire up to the final `.` while the
previous row's "sent" commit is in flight, and ended only after that commit returned.

The order per row (`send_one`), with row i's UPDATE already on its way (`SentRecorder`):
1. build row i + 1's message (CPU);
2. `begin` it: MAIL, RCPT, DATA (one round trip where the relay pipelines; where it does, they
   went out behind row i's `.` and only their replies are read) and the body, all but the final
   `.`: the relay accepts nothing yet;
3. collect row i's commit, and with it row i + 1's reader status and the issue's pause;
4. `end` it (write the `.` with row i + 2's envelope behind it, read the 250) and send row
   i + 1's UPDATE without waiting; or, if the reader left or the issue paused meanwhile,
   `abandon` it (drop the connection before the `.`).
So a row is committed as sent before the next message can be accepted, and a killed worker
still repeats at most the one message whose `.` was written; but the commit's wait now overlaps
the build, an SMTP round trip and the body's transfer instead of adding to them.

Where commits do not wait for the disk (`synchronous_commit = off` for the ledger's role, an
operator's choice: see the README), there is little commit wait left to hide, and the build of
row i + 2 moves into step 4 instead: between writing row i + 1's `.` and reading the relay's
answer (`Batch.build_early`). The message is the same; only the CPU overlaps another wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

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


Built = tuple[bytes, str, list[int]]  # a digest: the message, its Message-ID, its papers


def digest_message(
    settings: Settings, renderer: DigestRenderer, sub: Subscriber, exclude: set[int]
) -> Built | None:
    """The finished message for one reader, or None when nothing new is left to send them."""
    ranked = renderer.rank(sub, exclude)
    if not ranked:
        return None
    subject, text, html = renderer.parts(sub, renderer.items(sub, ranked))
    env = digest_envelope(settings, renderer.issue, sub, subject)
    message = finish_message(settings, env, text, html)
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
    build_early: bool = False  # the next row's digest is built while the relay answers a `.`
    early: tuple[int, Built | None | Exception] | None = None  # (delivery id, its digest) built early
    envelope: tuple[int, tuple[str, str]] | None = None  # (delivery id, its recipient and sender)


def send_one(batch: Batch, delivery_id: int, sub_id: int, next_row: tuple[int, int] | None) -> str:
    """Send one claimed row's digest; returns its outcome, "lost" if the row is not ours any
    more, or "paused" if the issue is (the row is left as it is). `next_row` (delivery id,
    subscriber id) is the row that comes next: with `build_early`, its digest is built while the
    relay answers this one's `.`; its id goes with this row's "sent" UPDATE either way."""
    conn, owner = batch.conn, batch.owner
    sub = _due(batch, sub_id)
    built = _message(batch, delivery_id, sub_id, sub) if sub is not None else None
    begun = _begin(batch, delivery_id, sub, built[0]) if sub is not None and built is not None else None
    refusals = 0
    if sub is not None:
        # The batch's snapshot of the reader can be minutes old: ask again just before the `.`
        # (the answer comes with the previous row's commit).
        check = batch.recorder.check_row(delivery_id, owner)
        if check is None or check.paused:  # erased or swept as stale: not ours; or paused
            batch.sender.abandon()
            return "lost" if check is None else "paused"
        if check.status is not SubscriberStatus.confirmed:
            sub = None
        refusals = check.refusals
    batch.recorder.wait()
    if sub is None:
        batch.sender.abandon()
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="no longer subscribed")
        return "skipped"
    if built is None:
        finish(conn, delivery_id, owner, DeliveryState.skipped, error="nothing new to send")
        return "skipped"
    outcome = _end(batch, delivery_id, sub_id, begun, next_row)
    if outcome != "sent":
        return outcome
    if refusals:  # the refusals before this 250 were not in a row after all
        clear_refusals(conn, batch.issue_id)
    _, message_id, paper_ids = built
    batch.recorder.record_sent(
        delivery_id,
        owner,
        next_row[0] if next_row else None,
        sent_at=utcnow(),
        smtp_code=250,
        message_id=message_id,
        paper_ids=paper_ids,
        error=None,
    )
    return "sent"


def commits_wait_for_disk(conn: Connection) -> bool:
    """Whether this connection's commits wait for the WAL flush (PostgreSQL's default); True
    for other databases. Asked once per database connection (`conn.info` lives as long)."""
    if conn.dialect.name != "postgresql":
        return True
    if "synchronous_commit" not in conn.info:
        conn.info["synchronous_commit"] = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
    return conn.info["synchronous_commit"] != "off"


def _due(batch: Batch, sub_id: int) -> Subscriber | None:
    """The row's reader, if the batch's snapshot says they are to be sent to."""
    sub = batch.subscribers.get(sub_id)
    return sub if sub is not None and sub.status is SubscriberStatus.confirmed else None


def _message(batch: Batch, delivery_id: int, sub_id: int, sub: Subscriber) -> Built | None:
    """The row's digest: the one built early (`_build_early`), or built now. A build that
    raised early raises here, where it would have."""
    early, batch.early = batch.early, None
    if early is not None and early[0] == delivery_id:
        if isinstance(early[1], Exception):
            raise early[1]
        return early[1]
    return _build(batch, sub_id, sub)


def _build(batch: Batch, sub_id: int, sub: Subscriber) -> Built | None:
    """The digest from the batch's snapshot of the reader and what they were sent before."""
    return digest_message(batch.settings, batch.renderer, sub, batch.history.get(sub_id, set()))


def _build_early(batch: Batch, row: tuple[int, int]) -> None:
    """Build the next row's digest while the relay answers the current one's `.` (CPU that
    would otherwise wait for the answer), from the same inputs as when its turn comes."""
    delivery_id, sub_id = row
    sub = _due(batch, sub_id)
    if sub is None:
        return
    try:
        built: Built | None | Exception = _build(batch, sub_id, sub)
    except Exception as exc:  # noqa: BLE001 - raised when the row comes up (`_message`)
        built = exc
    batch.early = (delivery_id, built)


def _envelope(batch: Batch, delivery_id: int, sub: Subscriber) -> tuple[str, str]:
    """The row's recipient and envelope sender (its VERP bounce address), signed once per row
    though asked twice (sent ahead, then begun)."""
    if batch.envelope is not None and batch.envelope[0] == delivery_id:
        return batch.envelope[1]
    envelope = sub.email, verp.bounce_address(batch.settings, verp.DELIVERY, delivery_id, sub.token_key)
    batch.envelope = (delivery_id, envelope)
    return envelope


def _next_envelope(batch: Batch, next_row: tuple[int, int] | None) -> tuple[str, str] | None:
    """The envelope of the row that comes next, if the snapshot says it is to be sent: the relay
    gets it behind this row's `.` (`Sender.end`'s `then`)."""
    if next_row is None or (sub := _due(batch, next_row[1])) is None:
        return None
    return _envelope(batch, next_row[0], sub)


def _begin(batch: Batch, delivery_id: int, sub: Subscriber, message: bytes) -> SendError | None:
    """Everything of the message but its final `.`; the refusal, if the relay refused it."""
    to, return_path = _envelope(batch, delivery_id, sub)
    try:
        batch.sender.begin(to, message, mail_from=return_path)
    except SendError as exc:
        return exc
    return None


def _end(
    batch: Batch, delivery_id: int, sub_id: int, begun: SendError | None, next_row: tuple[int, int] | None
) -> str:
    """The `.` of a begun message, or the refusal `begin` met, as the row's outcome."""
    conn, owner = batch.conn, batch.owner
    try:
        if begun is not None:
            raise begun
        batch.sender.end(
            partial(_build_early, batch, next_row) if next_row and batch.build_early else None,
            then=_next_envelope(batch, next_row),
        )
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
