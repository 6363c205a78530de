"""The bounce score, as Mailman keeps it: soft bounces add up, old ones fade.

A soft bounce adds `bounce_soft_weight`, at most once per day (one bad day is one bounce, however
many messages bounced that day, as in Mailman's `bounce_info`). The score halves every
`bounce_score_half_life_days`, and starts again from zero after `bounce_score_window_days`
without a bounce (Mailman's `bounce_info_stale_after`). At `bounce_score_threshold` the reader
is bounced. A hard bounce bounces at once (`bounce_hard_immediate`), or adds
`bounce_hard_weight` when an operator prefers to count those too.
"""

from __future__ import annotations

from datetime import datetime

from newsletter.config import Settings

DAY = 86400.0


def current_score(settings: Settings, score: float, scored_at: datetime | None, now: datetime) -> float:
    """What `score`, last raised at `scored_at`, is worth at `now`."""
    if scored_at is None or score <= 0:
        return 0.0
    days = max((now - scored_at).total_seconds() / DAY, 0.0)
    if days > settings.bounce_score_window_days:
        return 0.0
    return score * 0.5 ** (days / settings.bounce_score_half_life_days)


def same_day(a: datetime | None, b: datetime) -> bool:
    return a is not None and a.date() == b.date()


def raised_score(
    settings: Settings, score: float, scored_at: datetime | None, now: datetime, weight: float
) -> float | None:
    """The score after a bounce of `weight` at `now`, or None if one already counted today."""
    if same_day(scored_at, now) and score > 0:
        return None
    return current_score(settings, score, scored_at, now) + weight
