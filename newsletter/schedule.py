"""Each reader's slot: their weekday (weekly readers) at NEWSLETTER_DIGEST_HOUR in their zone.

Beat ticks hourly (`delivery.scheduled_send`). A tick finds every slot that arrived within the
last `catch_up_hours` (so ticks lost to a stopped beat are made up, and a reader who confirms or
picks a day after their slot waits for the next one instead of getting last week's issue late)
and plans its readers into the issue of the slot's period, read in the reader's zone: Monday
08:00 in Tokyo belongs to Tokyo's ISO week. An issue is still one edition per frequency and
period, frozen by the first slot that needs it; the ledger's unique (issue, reader) row keeps
each reader to one digest per issue however many ticks, restarts or beats plan it.

A reader with no weekday or zone of their own (NULL) follows the list's NEWSLETTER_DIGEST_WEEKDAY
and NEWSLETTER_TIMEZONE. The list's own weekly slot is always planned, so the archive gets its
weekly edition even before anyone subscribes; a daily slot with no reader makes no edition
(`delivery.scheduled_send`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, literal, select
from sqlmodel import Session, col

from newsletter.config import Settings
from newsletter.digests import period_of
from newsletter.logs import event
from newsletter.models import Frequency, Subscriber, SubscriberStatus
from newsletter.validation import loadable_zone, zone_names_set

log = logging.getLogger("newsletter.schedule")

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Slot:
    """Readers of one frequency, weekday and period whose slot has come: local time `at` in
    the first of `zones`, the same local hour in the others (one statement plans them all)."""

    frequency: Frequency
    zones: tuple[str, ...]
    weekday: int | None  # weekly slots: the readers' weekday; daily: None
    at: datetime

    @property
    def period(self) -> str:
        return period_of(self.frequency, self.at)


def last_slot(local_now: datetime, hour: int, weekday: int | None = None) -> datetime:
    """The latest `hour`:00 (on `weekday`, if given) at or before `local_now`, in its zone.

    Wall-clock arithmetic on purpose: 08:00 stays 08:00 across a DST change."""
    back = 0 if weekday is None else (local_now.weekday() - weekday) % 7
    slot = (local_now - timedelta(days=back)).replace(hour=hour, minute=0, second=0, microsecond=0)
    if slot > local_now:
        slot -= timedelta(days=1 if weekday is None else 7)
    return slot


def arrived(settings: Settings, slot: datetime, now: datetime) -> bool:
    """Whether `slot` came at most `catch_up_hours` before `now` (real time, not wall time)."""
    elapsed = now.astimezone(UTC) - slot.astimezone(UTC)
    return timedelta(0) <= elapsed < timedelta(hours=settings.catch_up_hours)


def reader_slots(session: Session, settings: Settings) -> set[tuple[Frequency, str, int | None]]:
    """The (frequency, zone, weekday) of every confirmed reader, defaults filled in, and the
    list's own: one small query (readers share few zones and days)."""
    zone, day = effective_zone(settings), effective_weekday(settings)
    rows = session.execute(
        select(col(Subscriber.frequency), zone, day)
        .where(col(Subscriber.status) == SubscriberStatus.confirmed)
        .distinct()
    ).all()
    found = {(Frequency(f), z, d if Frequency(f) is Frequency.weekly else None) for f, z, d in rows}
    return found | {
        (Frequency.daily, settings.timezone, None),
        (Frequency.weekly, settings.timezone, settings.digest_weekday),
    }


def due_slots(
    settings: Settings, readers: Iterable[tuple[Frequency, str, int | None]], now: datetime
) -> list[Slot]:
    """The slots among `readers` that have arrived at `now` (see `arrived`), zones whose slot
    falls in the same period grouped into one `Slot`."""
    due: dict[tuple[Frequency, int | None, str], Slot] = {}
    for frequency, zone, weekday in sorted(readers, key=str):
        if not loadable_zone(zone):  # dropped from the tz database since it was chosen
            event(log, "schedule.unknown_zone", logging.ERROR, zone=zone)
            continue
        at = last_slot(now.astimezone(ZoneInfo(zone)), settings.digest_hour, weekday)
        if not arrived(settings, at, now):
            continue
        key = (frequency, weekday, period_of(frequency, at))
        known = due.get(key)
        due[key] = (
            Slot(frequency, (*known.zones, zone), weekday, known.at)
            if known
            else Slot(frequency, (zone,), weekday, at)
        )
    return list(due.values())


def effective_zone(settings: Settings) -> ColumnElement[str]:
    return func.coalesce(col(Subscriber.timezone), literal(settings.timezone))


def effective_weekday(settings: Settings) -> ColumnElement[int]:
    return func.coalesce(col(Subscriber.weekday), literal(settings.digest_weekday))


def slot_readers(settings: Settings, slot: Slot) -> ColumnElement[bool]:
    """The condition on `Subscriber` of the readers whose slot `slot` is."""
    same_zone = effective_zone(settings).in_(slot.zones)
    if slot.weekday is None:
        return same_zone
    return and_(same_zone, effective_weekday(settings) == slot.weekday)


def next_digest_text(settings: Settings, sub: Subscriber, now: datetime | None = None) -> str:
    """When the reader's next digest arrives, in words, as the ticks will plan it: "within the
    hour" (their slot came within the catch-up hours), "today at 08:00 Europe/Berlin", "tomorrow
    at …", "on Friday at …" or "next Monday at …"."""
    zone = sub.timezone if sub.timezone and loadable_zone(sub.timezone) else settings.timezone
    weekday = None  # daily: every day
    if sub.frequency is Frequency.weekly:
        weekday = settings.digest_weekday if sub.weekday is None else sub.weekday
    local = (now or datetime.now(UTC)).astimezone(ZoneInfo(zone))
    last = last_slot(local, settings.digest_hour, weekday)
    if arrived(settings, last, local):
        return "within the hour"
    upcoming = last + timedelta(days=1 if weekday is None else 7)
    when = f"at {settings.digest_hour:02d}:00 {zone}"
    days = (upcoming.date() - local.date()).days
    if days <= 1:
        return f"{('today', 'tomorrow')[days]} {when}"
    return f"{'next' if days == 7 else 'on'} {WEEKDAYS[upcoming.weekday()]} {when}"


@lru_cache
def zone_names() -> list[str]:
    """Every IANA zone name the zoneinfo database knows, sorted (the preferences page's list)."""
    return sorted(zone_names_set())
