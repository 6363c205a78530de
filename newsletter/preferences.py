"""A reader's preferences, checked and set: interests, frequency, digest size and schedule."""

from __future__ import annotations

from newsletter import validation
from newsletter.models import Frequency, Subscriber, utcnow
from newsletter.validation import InvalidInput, clean_interests


def apply_preferences(
    sub: Subscriber,
    *,
    interests: str | None = None,
    frequency: str | None = None,
    max_papers: int | str | None = None,
    schedule: tuple[int | str | None, str | None] | None = None,
) -> None:
    """Validate and set whichever preferences are given; InvalidInput on a bad value.
    `schedule` is (weekday, time zone), both checked before either is set: None leaves that one
    as it is, an empty one means the list's."""
    if interests is not None:
        sub.interests = clean_interests(interests)
    if frequency is not None:
        try:
            sub.frequency = Frequency(frequency)
        except ValueError as exc:
            raise InvalidInput("Frequency must be weekly or daily.") from exc
    if max_papers is not None:
        try:
            n = int(max_papers)
        except (TypeError, ValueError) as exc:
            raise InvalidInput("Papers per digest must be a whole number.") from exc
        if not 1 <= n <= 50:
            raise InvalidInput("Papers per digest must be between 1 and 50.")
        sub.max_papers = n
    if schedule is not None:
        weekday, zone = schedule
        day = sub.weekday if weekday is None else validation.clean_weekday(weekday)
        tz = sub.timezone if zone is None else validation.clean_timezone(zone)
        sub.weekday, sub.timezone = day, tz
    sub.updated_at = utcnow()
