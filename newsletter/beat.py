"""Beat's schedule: which of the core's jobs run when (`workers.celery_app` installs it)."""

from __future__ import annotations

from datetime import UTC, tzinfo
from typing import Any

from celery.schedules import crontab

from newsletter.config import Settings
from newsletter.delivery import recover_stale_claims, scheduled_send
from newsletter.jobs import task_name
from newsletter.mail.transactional import sweep_journey_emails
from newsletter.papers.ingest import scheduled_ingest
from newsletter.privacy import forget_unconfirmed


class utc_crontab(crontab):  # noqa: N801 - named like the crontab it is
    """A crontab read in UTC whatever Celery's timezone (the list's NEWSLETTER_TIMEZONE).

    The digest tick must fall on the hour in UTC, where every whole-hour zone's 08:00 is: read
    in a half-hour list zone (Asia/Kolkata), `minute=0` fired at :30 UTC, and every reader in
    Berlin, New York or Tokyo got their digest half an hour late."""

    tz: tzinfo = UTC  # crontab reads its zone from the app unless the schedule names one


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The digest tick hourly on the hour in UTC (each reader's slot is NEWSLETTER_DIGEST_HOUR in
    their own zone, newsletter/schedule.py), the ingest at NEWSLETTER_INGEST_HOUR in the list's
    zone, the two recovery sweeps every NEWSLETTER_RECOVER_INTERVAL_SECONDS, and the signups
    never confirmed forgotten daily, half an hour after the ingest."""
    return {
        "digests": {"task": task_name(scheduled_send), "schedule": utc_crontab(minute=0)},
        "ingest": {
            "task": task_name(scheduled_ingest),
            "schedule": crontab(minute=0, hour=settings.ingest_hour),
        },
        "recover-stale-claims": {
            "task": task_name(recover_stale_claims),
            "schedule": settings.recover_interval_seconds,
        },
        "journey-emails": {
            "task": task_name(sweep_journey_emails),
            "schedule": settings.recover_interval_seconds,
        },
        "forget-unconfirmed": {
            "task": task_name(forget_unconfirmed),
            "schedule": crontab(minute=30, hour=settings.ingest_hour),
        },
    }
