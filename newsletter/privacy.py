"""A reader's data as a whole: everything we hold about them (export), and forgetting them
(erasure, leaving only a hash of the address in `suppression`, and taking the mail written to
them out of the outbox folder)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select

from newsletter import suppression
from newsletter.config import Settings
from newsletter.db import after_commit, rows_written, session_scope
from newsletter.logs import event
from newsletter.mail.senders import forget_outbox_mail
from newsletter.models import (
    BounceRecord,
    ConsentEvent,
    Delivery,
    JourneyEmail,
    Subscriber,
    SubscriberStatus,
    Vote,
    utcnow,
)

log = logging.getLogger("newsletter.privacy")

# Left out of the export: row ids, lookup keys, the link secrets and claim bookkeeping.
NOT_EXPORTED = {"id", "subscriber_id", "email_key", "token_key", "token_version", "claimed_by", "claimed_at"}


# Every table holding rows of one subscriber, by the name their export gives them; erasure deletes
# them in this order, then the subscriber.
OWN_ROWS: dict[str, Any] = {
    "deliveries": Delivery,
    "journey_emails": JourneyEmail,
    "votes": Vote,
    "consent_events": ConsentEvent,
    "bounce_events": BounceRecord,
}


def export_subscriber(session: Session, sub: Subscriber) -> dict[str, Any]:
    """Everything we hold about a subscriber, as JSON-ready data."""

    def rows(table: Any) -> list[dict[str, Any]]:
        found = session.exec(select(table).where(table.subscriber_id == sub.id).order_by(table.id))
        return [row.model_dump(mode="json", exclude=NOT_EXPORTED) for row in found]

    own = {name: rows(table) for name, table in OWN_ROWS.items()}
    return {
        **sub.model_dump(mode="json", exclude=NOT_EXPORTED | {"profile"}),
        "learned_profile": sub.profile,
        **own,
    }


def erase_subscriber(
    session: Session, settings: Settings, sub: Subscriber, reason: str = "erased on request"
) -> bool:
    """Forget a subscriber: every row of theirs (`OWN_ROWS`) goes, then the subscriber. A hash of
    the address stays behind (`suppression`), so no import brings them back. Once that commits,
    the emails the outbox folder holds for them (the embedded default's "sent mail": their
    digests, with their interests and links) are deleted too; a rollback leaves them. False if
    an erasure at the same time (a double-submitted form) did it first: nothing left to do."""
    suppression.suppress(session, sub.email_key, reason)
    # Presses at once each read the reader, then each deleted and inserted: one erased, the
    # others failed (a 500). The reader is read again, locked until commit (on SQLite the
    # suppression's write above holds its one writer's lock): a second press finds nobody.
    if session.get(Subscriber, sub.id, with_for_update=True, populate_existing=True) is None:
        return False
    _delete_reader(session, settings, sub)
    return True


def _delete_reader(session: Session, settings: Settings, sub: Subscriber) -> None:
    """Every row of the reader, then the reader; their outbox mail once that commits."""
    address = sub.email
    after_commit(session, lambda: forget_outbox_mail(settings.outbox_dir, address))
    for table in OWN_ROWS.values():
        session.exec(delete(table).where(col(table.subscriber_id) == sub.id))
    session.delete(sub)


FORGET_BATCH = 500


def forget_unconfirmed(settings: Settings, now: datetime | None = None) -> int:
    """Delete the signups nobody confirmed within NEWSLETTER_FORGET_UNCONFIRMED_DAYS of their last
    confirmation email (0: keep them); returns how many. They were kept forever: a stranger's
    signup of someone's address, with the stranger's interests, IP and browser in its consent
    row, which the owner could only remove by subscribing and then erasing. Nothing is left
    behind (no suppression): the person may sign up whenever they like."""
    if not settings.forget_unconfirmed_days:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=settings.forget_unconfirmed_days)
    # Asked lately: a signup since (its consent row), even one whose email could not go out
    # (the cooldown's reset leaves confirm_sent_at empty).
    asked_lately = (
        select(ConsentEvent.id)
        .where(ConsentEvent.subscriber_id == Subscriber.id, col(ConsentEvent.at) >= cutoff)
        .exists()
    )
    stale = (
        col(Subscriber.status) == SubscriberStatus.pending,
        col(Subscriber.confirmed_at).is_(None),
        col(Subscriber.created_at) < cutoff,
        or_(col(Subscriber.confirm_sent_at).is_(None), col(Subscriber.confirm_sent_at) < cutoff),
        ~asked_lately,
    )
    forgotten = 0
    while True:
        with session_scope(settings.database_url) as session:
            ids = session.exec(
                select(Subscriber.id).where(*stale).order_by(col(Subscriber.id)).limit(FORGET_BATCH)
            ).all()
            for sid in ids:
                # Still stale, by a write (a compare-and-set): it takes SQLite's one writer lock and
                # PostgreSQL's row lock, so a signup or a confirmation meanwhile keeps the reader.
                still = update(Subscriber).where(col(Subscriber.id) == sid, *stale)
                if rows_written(session, still.values(updated_at=Subscriber.updated_at)) == 1:
                    sub = session.get(Subscriber, sid, populate_existing=True)
                    assert sub is not None  # the write above found it, and holds it
                    _delete_reader(session, settings, sub)
                    forgotten += 1
        if len(ids) < FORGET_BATCH:
            event(log, "unconfirmed.forgotten", count=forgotten, days=settings.forget_unconfirmed_days)
            return forgotten
