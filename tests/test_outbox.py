"""The journey-email outbox on SQLite and PostgreSQL, with a real SMTP server in-process: one
claim before SMTP, a re-check of the subscriber, `sent` right after the 250, bounded retries,
and beat's sweep (run here in-process, where it sends instead of queueing)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from newsletter import outbox
from newsletter.db import get_engine, session_scope
from newsletter.mail.senders import TransientSendError
from newsletter.mail.transactional import send_journey_email, sweep_journey_emails
from newsletter.models import DeliveryState, JourneyEmail, Subscriber, SubscriberStatus, utcnow
from tests.conftest import free_port


@pytest.fixture
def env(configure, db_url, smtp_server):
    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=db_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_JOURNEY_REQUEUE_AFTER_SECONDS="60",
        NEWSLETTER_JOURNEY_MAX_ATTEMPTS="3",
    )
    return settings, box


def written(settings, address: str, kind: str, status=SubscriberStatus.confirmed) -> int:
    """A subscriber and one unsent `kind` email for them, written as a signup writes it (but
    with no job queued); returns the email's id."""
    with session_scope(settings.database_url) as session:
        sub = Subscriber(email=address, email_key=address, status=status)
        session.add(sub)
        session.flush()
        return outbox.add_email(session.connection(), sub.id, kind, utcnow() + timedelta(minutes=1))


def row(settings, email_id: int) -> JourneyEmail:
    with session_scope(settings.database_url) as session:
        return session.get(JourneyEmail, email_id)


def change(settings, email_id: int, **values) -> None:
    with session_scope(settings.database_url) as session:
        email = session.get(JourneyEmail, email_id)
        for key, value in values.items():
            setattr(email, key, value)


def test_a_journey_email_is_sent_once_however_often_its_job_runs(env):
    settings, box = env
    email_id = written(settings, "ada@example.org", "welcome")
    assert send_journey_email(settings, email_id) == "sent"
    assert [send_journey_email(settings, email_id) for _ in range(2)] == ["not-due", "not-due"]
    [msg] = box.parsed("ada@example.org")
    done = row(settings, email_id)
    assert (done.state, done.attempts, done.smtp_code) == (DeliveryState.sent, 1, 250)
    assert done.message_id == msg["Message-ID"] and done.sent_at is not None
    assert "Welcome" in str(msg["Subject"])


def test_an_email_that_no_longer_makes_sense_is_skipped(env):
    settings, box = env
    gone = written(settings, "ada@example.org", "welcome", SubscriberStatus.unsubscribed)
    confirmed = written(settings, "bob@example.org", "confirm", SubscriberStatus.confirmed)
    stale = written(settings, "cy@example.org", "confirm", SubscriberStatus.pending)
    change(settings, stale, created_at=utcnow() - timedelta(hours=settings.confirm_token_hours, minutes=1))
    assert [send_journey_email(settings, i) for i in (gone, confirmed, stale)] == ["skipped"] * 3
    assert box.messages == []
    assert [row(settings, i).error for i in (gone, confirmed, stale)] == [
        "subscriber is unsubscribed now",
        "subscriber is confirmed now",
        "older than a confirmation link lives",
    ]


def test_a_refusal_fails_the_email_once_and_never_retries(env):
    settings, box = env
    box.replies["ada@example.org"] = "550 5.1.1 No such user here"
    email_id = written(settings, "ada@example.org", "confirm", SubscriberStatus.pending)
    assert send_journey_email(settings, email_id) == "refused"
    change(settings, email_id, next_attempt_at=utcnow() - timedelta(seconds=1))
    assert send_journey_email(settings, email_id) == "not-due"
    assert sweep_journey_emails(settings) == {"stale": 0, "queued": 0}
    refused = row(settings, email_id)
    assert (refused.state, refused.smtp_code, refused.attempts) == (DeliveryState.failed, 550, 1)


def test_transient_failures_defer_with_a_growing_gap_then_fail(configure, db_url):
    settings = configure(
        NEWSLETTER_DATABASE_URL=db_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(free_port()),  # nothing listens there
        NEWSLETTER_JOURNEY_REQUEUE_AFTER_SECONDS="60",
        NEWSLETTER_JOURNEY_MAX_ATTEMPTS="3",
    )
    email_id = written(settings, "ada@example.org", "welcome")
    gaps = []
    for _ in range(2):
        with pytest.raises(TransientSendError):
            send_journey_email(settings, email_id)
        deferred = row(settings, email_id)
        assert deferred.state is DeliveryState.deferred
        gaps.append(round((deferred.next_attempt_at - utcnow()).total_seconds() / 60))
    assert gaps == [1, 2]  # the sweep's gap doubles with each try
    assert send_journey_email(settings, email_id) == "failed"  # the third and last try
    failed = row(settings, email_id)
    assert (failed.state, failed.attempts) == (DeliveryState.failed, 3)
    assert failed.error.startswith("gave up after 3 tries: cannot connect")


def test_the_sweep_sends_what_no_job_sent_and_takes_back_dead_claims(env):
    settings, box = env
    waiting = written(settings, "ada@example.org", "welcome")
    assert sweep_journey_emails(settings) == {"stale": 0, "queued": 0}  # its own job has a minute
    change(settings, waiting, next_attempt_at=utcnow() - timedelta(seconds=1))
    assert sweep_journey_emails(settings) == {"stale": 0, "queued": 1}
    assert sweep_journey_emails(settings) == {"stale": 0, "queued": 0}
    assert len(box.parsed("ada@example.org")) == 1

    # Two claims whose workers died long ago: one with tries left, one on its last try.
    dead = written(settings, "bob@example.org", "welcome")
    last = written(settings, "cy@example.org", "welcome")
    with get_engine(settings.database_url).connect() as conn:
        assert outbox.claim(conn, dead, "dead-worker") and outbox.claim(conn, last, "dead-worker")
    long_ago = utcnow() - timedelta(hours=1)
    change(settings, dead, claimed_at=long_ago)
    change(settings, last, claimed_at=long_ago, attempts=settings.journey_max_attempts)
    assert sweep_journey_emails(settings) == {"stale": 2, "queued": 1}
    assert len(box.parsed("bob@example.org")) == 1 and box.parsed("cy@example.org") == []
    assert (row(settings, dead).state, row(settings, dead).attempts) == (DeliveryState.sent, 2)
    assert row(settings, last).state is DeliveryState.failed
