"""A reader's data as a whole: everything we hold about them (export), and forgetting them
(erasure, leaving only a hash of the address in `suppression`, and taking the mail written to
them out of the outbox folder)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from newsletter import suppression
from newsletter.config import Settings
from newsletter.db import after_commit
from newsletter.mail.senders import forget_outbox_mail
from newsletter.models import BounceRecord, ConsentEvent, Delivery, JourneyEmail, Subscriber, Vote

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
    address = sub.email
    after_commit(session, lambda: forget_outbox_mail(settings.outbox_dir, address))
    for table in OWN_ROWS.values():
        session.exec(delete(table).where(col(table.subscriber_id) == sub.id))
    session.delete(sub)
    return True
