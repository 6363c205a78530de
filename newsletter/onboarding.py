"""Onboarding by example: a reader ticks papers of this period they like, at signup or on the
preferences page, and the picks seed their profile exactly as "more like this" votes do, so the
first digest is already theirs.

The signup form and the preferences page list papers that between them stand for the period's
topics (`picker_papers`, chosen by `ranking.picker_order`); only those ids are accepted
(`checked_picks`). A signup's picks wait in `Subscriber.pending_likes` until the address is
confirmed, like its interests (a signup may come from someone who does not own the address, and
must not change a confirmed reader); the preferences page, which only the reader's link opens,
applies them at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sqlmodel import Session, col, select

from newsletter.cards import paper_text
from newsletter.digests import candidate_pool
from newsletter.models import Frequency, Paper, Subscriber, saved_id, utcnow
from newsletter.ranking import PaperText, build_index, has_liked, picker_order, update_profile
from newsletter.values import shorten

PICKER_PAPERS = 20  # papers the picker lists
MAX_PICKS = 10  # picks kept from one form
LINE_CHARS = 160  # the one line under each title
PICKER_SECONDS = 60.0  # how long a process reuses the picker's list
_picker_kept: dict[str, tuple[float, list[PickerPaper]]] = {}  # database URL -> (until, papers)


@dataclass(frozen=True)
class PickerPaper:
    id: int
    title: str
    line: str  # the TL;DR when the source has one, else the start of the abstract


def picker_papers(session: Session) -> list[PickerPaper]:
    """PICKER_PAPERS papers of this period (the weekly window) that between them cover its
    topics (`picker_order`), for readers to pick from.

    Every signup page and preferences page shows them, and the list changes only with an
    ingest or the week, so each process keeps it for PICKER_SECONDS per database."""
    key = str(session.get_bind().engine.url)
    kept = _picker_kept.get(key)
    if kept is None or kept[0] < time.monotonic():
        pool = {saved_id(p): p for p in candidate_pool(session, Frequency.weekly, utcnow())}
        papers = [
            PickerPaper(
                id=i,
                title=pool[i].title,
                line=shorten(pool[i].summary or pool[i].abstract, LINE_CHARS, one_line=True, at_word=True),
            )
            for i in _listed(tuple(paper_text(p) for p in pool.values()))
        ]
        kept = _picker_kept[key] = (time.monotonic() + PICKER_SECONDS, papers)
    return kept[1]


@lru_cache(maxsize=4)
def _listed(pool: tuple[PaperText, ...]) -> tuple[int, ...]:
    """The picker's ids for a pool, computed again only when a paper changes (an ingest), not
    every PICKER_SECONDS: the pool's index takes tens of milliseconds. Trending, which depends
    on the time, only breaks ties between equally covering papers."""
    return tuple(picker_order(build_index(pool, utcnow()), PICKER_PAPERS))


def checked_picks(session: Session, ids: Iterable[int]) -> list[int]:
    """The picked ids that the picker offers now, in order, without repeats, at most MAX_PICKS;
    anything else (an old page, a forged id) is dropped."""
    picked = list(dict.fromkeys(ids))
    if not picked:  # most signups tick nothing: no need to look
        return []
    offered = {p.id for p in picker_papers(session)}
    return [i for i in picked if i in offered][:MAX_PICKS]


def like_papers(session: Session, sub: Subscriber, ids: list[int]) -> int:
    """Seed the reader's profile with the papers `ids`, as one "more like this" vote each, in
    order; return how many counted. The index is the picker's pool, so a paper's strongest
    terms are weighed against the papers around it, as for a vote on a digest."""
    if not ids:
        return 0
    pool = {saved_id(p): p for p in candidate_pool(session, Frequency.weekly, utcnow())}
    missing = [i for i in ids if i not in pool]
    if missing:  # picked from a page that has since moved on: still papers we know
        pool |= {saved_id(p): p for p in session.exec(select(Paper).where(col(Paper.id).in_(missing)))}
    index = build_index([paper_text(p) for p in pool.values()], utcnow())
    profile = sub.profile or None
    counted = 0
    for paper_id in ids:
        # A paper liked already counts once: a reload of the "Saved" page posts the form again,
        # and each post added the paper's weight again (0.12, 0.24, 0.35 …).
        if paper_id in index.positions and not has_liked(profile, index, paper_id):
            profile = update_profile(profile, index, paper_id, 1)
            counted += 1
    sub.profile = profile or {}
    return counted


def apply_pending_likes(session: Session, sub: Subscriber) -> None:
    """At confirmation: the signup's picks join the profile."""
    if sub.pending_likes:
        like_papers(session, sub, list(sub.pending_likes))
    sub.pending_likes = None
