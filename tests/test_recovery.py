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
from newsletter.delivery import dispatch_issue, recover_stale_claims, resume_issue
from newsletter.ledger import delivery_counts, plan_issue
from newsletter.models import Delivery, DeliveryState, Issue, utcnow
from newsletter.pauses import pause_issue
from newsletter.testing import configured_session
from tests.faultkit import relay_world


def deferred_since(days: int, weeks_back: int, planned_days: int | None = None) -> int:
    """An issue created `days` ago (of the week `weeks_back` ago: one issue per week) whose
    readers were planned `planned_days` ago (default: when it was made), all of whose rows were
    deferred for the last time just after that."""
    now = utcnow()
    with configured_session() as session:
        issue, _ = plan_issue(session, now=now - timedelta(weeks=weeks_back))
        issue = session.get(Issue, issue.id)
        issue.created_at = now - timedelta(days=days)
        issue.planned_at = now - timedelta(days=days if planned_days is None else planned_days)
        for row in session.exec(select(Delivery).where(Delivery.issue_id == issue.id)):
            row.state, row.attempts, row.due_since = DeliveryState.deferred, 9, issue.planned_at
            row.claimed_at, row.error = issue.planned_at + timedelta(hours=1), "451 4.3.0 try again later"
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


def test_readers_planned_days_after_their_issue_was_made_are_retried(configure, db_url, caplog):
    """The window counts from a row's own planning. A weekly issue is made at the week's first
    slot (Monday); its Thursday-to-Sunday readers are planned on their day, 3+ days later. The
    sweep gave their rows up as soon as one was deferred or still queued, by the issue's age:
    a relay's greylisting cost every late-week reader that week's digest."""
    with relay_world(configure, db_url, 4) as (box, readers):
        late_week = deferred_since(days=5, weeks_back=0, planned_days=1)
        recover_stale_claims(get_settings())
    assert delivery_counts(get_engine(db_url), late_week)["sent"] == 4
    assert all(box.received[a] == 1 for a in readers)
    assert not [r for r in caplog.records if r.getMessage() == "issue.rows_expired"]


def test_a_paused_issue_gives_nothing_up_and_its_resume_sends_the_rest(configure, db_url, caplog):
    """README: nothing more is sent until `issues resume`. A pause longer than the retry window
    made the sweep fail the paused rows, so the resume found nothing to send."""
    with relay_world(configure, db_url, 3) as (box, readers):
        paused = deferred_since(days=5, weeks_back=0)
        with get_engine(db_url).connect() as conn:
            assert pause_issue(conn, paused, "checking the papers")
        recover_stale_claims(get_settings())
        assert delivery_counts(get_engine(db_url), paused)["deferred"] == 3  # kept while paused
        box.rcpt_451 = 3  # the relay greylists the sends the resume makes
        resume_issue(get_settings(), paused)
        recover_stale_claims(get_settings())  # the window starts again at the resume
        assert delivery_counts(get_engine(db_url), paused)["deferred"] == 3
        dispatch_issue(get_settings(), paused)  # the next retry
    assert delivery_counts(get_engine(db_url), paused)["sent"] == 3
    assert all(box.received[a] == 1 for a in readers)
    assert not [r for r in caplog.records if r.getMessage() == "issue.rows_expired"]
