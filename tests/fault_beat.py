"""`celery -A tests.fault_beat beat`: the product's own beat schedule, except that the daily
digest entry ticks every 1.5 s instead of once a day, so a test can watch many scheduled sends
(two beats at once, a restarted beat) within seconds. The tasks it publishes are the real ones."""

from workers.celery_app import app

app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "digests": {"task": "newsletter.scheduled_send", "schedule": 1.5},
}

__all__ = ["app"]
