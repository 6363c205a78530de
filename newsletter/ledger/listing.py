"""The operator's view of single deliveries: who, which state, and what the server answered.

Read-only, like `reports.py`; pages through large issues by delivery id (keyset), never OFFSET.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import Session

from newsletter.ledger.tables import DELIVERIES, ISSUES, SUBSCRIBERS
from newsletter.models import DeliveryState


class DeliveryRecord(BaseModel):
    """One reader's delivery of one issue, with the last SMTP answer."""

    id: int
    issue_id: int
    period: str
    subscriber_id: int
    email: str
    state: DeliveryState
    attempts: int
    smtp_code: int | None  # the server's last answer (250 when sent)
    error: str | None  # its reply text, or why the row was put back
    last_attempt_at: datetime | None  # when the last attempt claimed the row
    sent_at: datetime | None


def delivery_records(
    session: Session,
    states: Sequence[DeliveryState],
    *,
    issue_id: int | None = None,
    subscriber_id: int | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[DeliveryRecord]:
    """Deliveries in `states` (of one issue, or one reader, if given) with an id above
    `after_id`, in id order, at most `limit`."""
    d = DELIVERIES.c
    stmt = (
        select(
            d.id,
            d.issue_id,
            ISSUES.c.period,
            d.subscriber_id,
            SUBSCRIBERS.c.email,
            d.state,
            d.attempts,
            d.smtp_code,
            d.error,
            d.claimed_at.label("last_attempt_at"),
            d.sent_at,
        )
        .join_from(DELIVERIES, SUBSCRIBERS, SUBSCRIBERS.c.id == d.subscriber_id)
        .join(ISSUES, ISSUES.c.id == d.issue_id)
        .where(d.state.in_(list(states)), d.id > after_id)
        .order_by(d.id)
        .limit(limit)
    )
    if issue_id is not None:
        stmt = stmt.where(d.issue_id == issue_id)
    if subscriber_id is not None:
        stmt = stmt.where(d.subscriber_id == subscriber_id)
    return [DeliveryRecord.model_validate(dict(row)) for row in session.execute(stmt).mappings()]
