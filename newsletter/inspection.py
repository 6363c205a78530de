"""What the operator looks at when something went wrong: deliveries by state and why.

Plain functions that take the settings and return pydantic models; the CLI prints them and the
admin API can return them as they are.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import NotFound, OperatorError
from newsletter.ledger.listing import DeliveryRecord, delivery_records
from newsletter.models import DeliveryState, Issue

MAX_LIMIT = 10_000
# What `issues show --failures` and a bare `deliveries list` show: what needs a look.
TROUBLE = (DeliveryState.failed, DeliveryState.deferred)


class DeliveryPage(BaseModel):
    """Up to `limit` deliveries; `next_after` continues the list (None: this was the end)."""

    states: list[DeliveryState]
    issue_id: int | None = None
    rows: list[DeliveryRecord] = Field(default_factory=list)
    next_after: int | None = None


def parse_states(names: list[str] | None) -> list[DeliveryState]:
    """States by name (failed and deferred when none is given); an unknown one is refused."""
    try:
        return [DeliveryState(n.strip().lower()) for n in names] if names else list(TROUBLE)
    except ValueError as exc:
        allowed = ", ".join(s.value for s in DeliveryState)
        raise OperatorError(
            f"unknown delivery state in {', '.join(names or [])}; use one of {allowed}"
        ) from exc


def list_deliveries(
    settings: Settings,
    states: list[str] | None = None,
    *,
    issue_id: int | None = None,
    email: str | None = None,
    limit: int = 100,
    after: int = 0,
) -> DeliveryPage:
    """Deliveries in `states` (default failed and deferred), of one issue (or reader) or all,
    oldest row first, `limit` at a time; pass the answer's `next_after` as `after` for the next
    page."""
    wanted = parse_states(states)
    if not 1 <= limit <= MAX_LIMIT:
        raise OperatorError(f"--limit must be between 1 and {MAX_LIMIT}")
    with session_scope(settings.database_url) as session:
        if issue_id is not None and session.get(Issue, issue_id) is None:
            raise NotFound(f"no issue with id {issue_id}")
        reader = subs.find_by_email(session, email) if email else None
        if email and reader is None:
            raise NotFound(f"no subscriber with address {email}")
        rows = delivery_records(
            session,
            wanted,
            issue_id=issue_id,
            subscriber_id=reader.id if reader else None,
            after_id=after,
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(states=wanted, issue_id=issue_id, rows=rows, next_after=rows[-1].id if more else None)


def issue_failures(settings: Settings, issue_id: int, limit: int = 100) -> DeliveryPage:
    """An issue's failed and deferred deliveries, with the server's answers."""
    return list_deliveries(settings, None, issue_id=issue_id, limit=limit)
