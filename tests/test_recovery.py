"""Rows left to send days later are retried within a window, then given up out loud (security
review L6).

The recovery sweep (`recover_stale_claims`, beat's `recover-stale-claims`) runs in-process
against a real SMTP server, on SQLite and PostgreSQL. Two issues look like a relay outage
that outlasted every Celery retry: all their rows are `deferred`, last tried long ago.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from newsletter.config import get_settings
from newsletter.db import get_engine
from newsletter.delivery import recover_stale_claims
from newsletter.ledger import delivery_counts, plan_issue
from newsletter.models import Delivery, DeliveryState, Issue, utcnow
from newsletter.testing import configured_session
from tests.faultkit import relay_world


def deferred_since(days: int, weeks_back: int) -> int:
    """An issue created `days` ago (of the week `weeks_back` ago: one issue per week), all of
    whose rows were deferred for the last time just after it was planned."""
    now = utcnow()
    with configured_session() as session:
        issue, _ = plan_issue(session, now=now - timedelta(weeks=weeks_back))
        issue = session.get(Issue, issue.id)
        issue.created_at = issue.planned_at = now - timedelta(days=days)
        for row in session.exec(select(Delivery).where(Delivery.issue_id == issue.id)):
            row.state, row.attempts = DeliveryState.deferred, 9
            row.claimed_at, row.error = issue.created_at + timedelta(hours=1), "451 4.3.0 try again later"
            session.add(row)
        return issue.id


def test_deferred_rows_of_older_issues_are_retried_then_given_up(configure, db_url, caplog):
    with relay_world(configure, db_url, 6) as (box, readers):
        recent = deferred_since(days=2, weeks_back=0)
        old = deferred_since(days=5, weeks_back=2)
        recover_stale_claims(get_settings())
    engine = get_engine(db_url)
    # Before the fix, only issues of the last 24 hours were dispatched again: both stayed deferred.
    assert delivery_counts(engine, recent)["sent"] == 6
    assert all(box.received[a] == 1 for a in readers)
    assert delivery_counts(engine, old)["failed"] == 6
    with configured_session() as session:
        errors = {r.error for r in session.exec(select(Delivery).where(Delivery.issue_id == old))}
    assert errors == {"gave up after 3 days"}
    [expired] = [r for r in caplog.records if r.getMessage() == "issue.rows_expired"]
    assert (expired.issue_id, expired.rows, expired.days) == (old, 6, 3)
    recover_stale_claims(get_settings())  # nothing left to give up or to send
    assert len([r for r in caplog.records if r.getMessage() == "issue.rows_expired"]) == 1
    assert box.total() == 6
