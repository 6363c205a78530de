"""Beat's schedule fires when README's "Schedules" says, whatever the list's own zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.beat import beat_schedule
from newsletter.config import Settings
from newsletter.worker import make_app


def next_run(settings: Settings, entry: str, now: datetime) -> datetime:
    """When beat runs `entry` next, having last run it a minute before `now`."""
    schedule = beat_schedule(settings)[entry]["schedule"]
    schedule.app = make_app(settings)
    schedule.nowfun = lambda: now
    return now + max(schedule.remaining_estimate(now - timedelta(minutes=1)), timedelta(0))


@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham"]
)
def test_the_digest_tick_is_on_the_hour_in_utc_whatever_the_lists_zone(zone):
    """With a half-hour list zone (NEWSLETTER_TIMEZONE=Asia/Kolkata) the hourly tick was read in
    that zone and fired at :30 UTC, so every reader in a whole-hour zone (Berlin, New York,
    Tokyo) got their 08:00 digest at 08:30; in Kathmandu's, at :15 or :45."""
    settings = Settings(mode="test", timezone=zone)
    now = datetime(2026, 12, 2, 7, 10, tzinfo=UTC)
    assert next_run(settings, "digests", now) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_the_ingest_stays_at_its_hour_in_the_lists_zone():
    settings = Settings(mode="test", timezone="Asia/Kolkata", ingest_hour=5)
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert next_run(settings, "ingest", now) == datetime(2026, 12, 2, 23, 30, tzinfo=UTC)  # 05:00 IST


def test_signups_never_confirmed_are_forgotten_daily_after_the_ingest():
    settings = Settings(mode="test", timezone="Europe/Berlin", ingest_hour=5)
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert next_run(settings, "forget-unconfirmed", now) == datetime(
        2026, 12, 3, 4, 30, tzinfo=UTC
    )  # 05:30 CET


def test_every_entry_names_a_task_the_workers_run(configure):
    configure()
    import workers.tasks  # noqa: F401 - registers the tasks
    from workers.celery_app import app

    entries = beat_schedule(Settings(mode="test"))
    assert {entry["task"] for entry in entries.values()} <= set(app.tasks)
