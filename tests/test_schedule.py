"""Weekly digests go out on the right day, and in the right week, outside UTC.

Beat fires `digests` at `NEWSLETTER_DIGEST_HOUR` in `NEWSLETTER_TIMEZONE`; the weekday that
makes the weekly issue due and the ISO week (or day) that names the issue are read in that
zone too. `newsletter send --now` lands on the same issue as the scheduled send.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter import admin
from newsletter.delivery import due_frequencies, scheduled_send
from newsletter.models import Frequency, Issue, SubscriberStatus
from newsletter.testing import configured_session
from newsletter.web import create_app
from tests.test_digests import add_subscriber

CASES = [
    # Monday 07:00 in Tokyo is Sunday 22:00 UTC: Tokyo is in ISO week 49, UTC still in 48.
    ("Asia/Tokyo", 0, datetime(2026, 11, 29, 22, 0, tzinfo=UTC), "2026-W49", "2026-11-30"),
    # Sunday 20:00 in Los Angeles is Monday 04:00 UTC: LA is in week 48, UTC already in 49.
    ("America/Los_Angeles", 6, datetime(2026, 11, 30, 4, 0, tzinfo=UTC), "2026-W48", "2026-11-29"),
]


@pytest.mark.parametrize(("zone", "weekday", "fired_at", "week", "day"), CASES)
def test_the_weekly_issue_is_due_on_the_local_day_and_named_by_the_local_week(
    configure, sqlite_url, zone, weekday, fired_at, week, day
):
    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_TIMEZONE=zone,
        NEWSLETTER_DIGEST_WEEKDAY=str(weekday),
    )
    add_subscriber("weekly@example.org")
    add_subscriber("daily@example.org", frequency=Frequency.daily)
    assert due_frequencies(settings, fired_at) == [Frequency.daily, Frequency.weekly]  # before: daily
    scheduled_send(settings, fired_at)
    # An operator's `send --now` at the same moment finds the issues beat planned.
    assert admin.send_now(settings, "weekly", now=fired_at)["planned"] == 0
    assert admin.send_now(settings, "daily", dry_run=True, now=fired_at)["period"] == day
    with configured_session() as session:
        issues = {(i.frequency, i.period) for i in session.exec(select(Issue))}
    assert issues == {(Frequency.weekly, week), (Frequency.daily, day)}


@pytest.mark.parametrize(("zone", "weekday", "fired_at", "week", "day"), CASES)
def test_the_day_before_locally_is_not_the_weekly_day(configure, zone, weekday, fired_at, week, day):
    settings = configure(NEWSLETTER_TIMEZONE=zone, NEWSLETTER_DIGEST_WEEKDAY=str(weekday))
    assert due_frequencies(settings, fired_at - timedelta(days=1)) == [Frequency.daily]


def test_an_unknown_time_zone_is_refused_at_start(configure):
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        configure(NEWSLETTER_TIMEZONE="Mars/Olympus")


def test_no_daily_edition_is_made_or_archived_in_a_period_without_daily_readers(configure, pg_url):
    """Beat fires every day; with weekly readers only, a Monday makes the weekly edition and
    nothing for daily, and the archive lists only what went to someone."""
    settings = configure(NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_DIGEST_WEEKDAY="0")
    monday, tuesday = datetime(2026, 11, 30, 7, 0, tzinfo=UTC), datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    add_subscriber("weekly@example.org")
    add_subscriber("left@example.org", status=SubscriberStatus.unsubscribed, frequency=Frequency.daily)
    assert len(scheduled_send(settings, monday)) == 1
    assert scheduled_send(settings, tuesday) == []
    # An operator's explicit `send --now --frequency daily` still makes one, sent to nobody:
    # it stays out of the archive too.
    admin.send_now(settings, "daily", now=tuesday)
    with configured_session() as session:
        issues = {i.id: (i.frequency, i.period) for i in session.exec(select(Issue))}
    assert sorted(issues.values()) == [(Frequency.daily, "2026-12-01"), (Frequency.weekly, "2026-W49")]
    with TestClient(create_app(settings)) as client:
        archive = client.get("/archive").text
    listed = {int(i) for i in re.findall(r'/archive/(\d+)"', archive)}
    assert listed == {i for i, (freq, _) in issues.items() if freq is Frequency.weekly}

    add_subscriber("daily@example.org", frequency=Frequency.daily)  # a daily reader at last
    assert len(scheduled_send(settings, datetime(2026, 12, 2, 7, 0, tzinfo=UTC))) == 1
