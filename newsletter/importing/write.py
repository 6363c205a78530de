"""The writes of an import, as bulk statements on the caller's connection (one transaction):
new subscribers in one multi-row INSERT, their consent rows and confirmation emails likewise,
changes to known ones as one executemany UPDATE per set of columns."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from newsletter.importing import bulk
from newsletter.importing.plan import SUBSCRIBERS, Known
from newsletter.importing.rows import ImportRow
from newsletter.models import (
    ConsentEvent,
    DeliveryState,
    Frequency,
    JourneyEmail,
    SubscriberStatus,
    new_token_key,
    table_of,
)

CONSENT = table_of(ConsentEvent)
EMAILS = table_of(JourneyEmail)


def insert_new(
    conn: Connection, rows: list[ImportRow], *, confirmed: bool, max_papers: int, now: datetime
) -> dict[str, int]:
    """Insert the new addresses, confirmed or pending; their ids by lookup key. An address that
    someone else added meanwhile is left out (ON CONFLICT DO NOTHING), so it has no id here."""
    if not rows:
        return {}
    status = SubscriberStatus.confirmed if confirmed else SubscriberStatus.pending
    values = [
        {
            "email": row.email,
            "email_key": row.key,
            "interests": "",
            "frequency": Frequency.weekly,
            "max_papers": max_papers,
            **row.preferences(),
            "status": status,
            "token_key": new_token_key(),
            "token_version": 0,
            "pending_interests": None,
            "confirm_sent_at": None if confirmed else now,
            "created_at": now,
            "updated_at": now,
            "confirmed_at": now if confirmed else None,
            "unsubscribed_at": None,
            "profile": {},
        }
        for row in rows
    ]
    columns = set().union(*values)
    for value in values:  # one statement for many rows needs the same keys in each
        value.update(dict.fromkeys(columns - value.keys()))
    return bulk.insert_new(conn, SUBSCRIBERS, values, "email_key")


def record_consent(
    conn: Connection, ids: dict[str, int], event: str, source: str, now: datetime, wording: str | None
) -> None:
    """One consent row per subscriber in `ids` (lookup key → id)."""
    if ids:
        rows = [
            {"subscriber_id": sid, "email_key": key, "event": event, "at": now, "ip": None}
            | {"user_agent": source, "wording": wording}
            for key, sid in ids.items()
        ]
        bulk.insert_rows(conn, CONSENT, rows)


def queue_confirmations(conn: Connection, ids: list[int], now: datetime) -> None:
    """A pending confirmation email in the journey outbox for each subscriber, due now: the
    sweep (`sweep_journey_emails`) sends them, never this import."""
    if ids:
        row = {"kind": "confirm", "state": DeliveryState.pending, "attempts": 0}
        values = [{**row, "subscriber_id": sid, "created_at": now, "next_attempt_at": now} for sid in ids]
        bulk.insert_rows(conn, EMAILS, values)


def update_known(
    conn: Connection,
    rows: list[tuple[ImportRow, Known | None]],
    now: datetime,
    *,
    confirm: bool,
    preferences: bool = True,
) -> list[int]:
    """Set each row's changed preferences on its subscriber (none without `preferences`) and,
    with `confirm`, confirm a pending one, as one executemany UPDATE per set of columns. A
    subscriber whose status changed since the plan read it is left alone. Returns the ids
    asked for."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row, known in rows:
        if known is not None:
            values = known.changes(row) if preferences else {}
            groups[tuple(sorted(values))].append({"id": known.id, "status": known.status, **values})
    fixed: dict[str, Any] = {"updated_at": now}
    if confirm:
        fixed |= {"status": SubscriberStatus.confirmed, "confirmed_at": now, "pending_interests": None}
    for params in groups.values():
        bulk.update_where(conn, SUBSCRIBERS, params, ("id", "status"), fixed)
    return [known.id for _, known in rows if known is not None]
