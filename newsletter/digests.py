"""Plan an issue, rank its papers for each subscriber, and render the digest.

An issue keeps a snapshot of its papers when planned (`paper_snapshot`) and renders from it: a later
ingest cannot change it. Premailer (~15 ms) runs once per issue: `issue_template` renders the digest once
with every candidate paper and slot markers where per-reader values go, inlines the CSS, and cuts it into
segments (`newsletter.assemble`); `DigestRenderer.render` ranks, picks the cards and puts escaped values
into the slots by position (never searching paper text for markers), held equal to render + inline.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from newsletter import links
from newsletter.assemble import (
    SHELL_SLOTS,
    IssueTemplate,
    SlotMarker,
    TextIssueTemplate,
    new_marker,
    text_template,
)
from newsletter.cards import PaperView, issue_papers, paper_snapshot, paper_text, paper_view
from newsletter.config import Settings
from newsletter.db import insert_ignore, session_scope
from newsletter.embeddings import embed_index
from newsletter.errors import NoPapers
from newsletter.mail.qp import Pieces, pieces_text
from newsletter.mail.render import RenderedEmail, inline_css, render_subject
from newsletter.models import Frequency, Issue, Paper, Subscriber, saved_id, table_of
from newsletter.ranking import PaperIndex, RankedItem, build_index, rank_papers, trending_score
from newsletter.templating import html_env, text_env

MAX_CANDIDATES = 100
RANK_CACHE_SIZE = 512  # rankings remembered per issue (readers who share interests share them)
WINDOW = {Frequency.weekly: timedelta(days=7), Frequency.daily: timedelta(days=2)}


# ---- periods and planning -------------------------------------------------------------------


def period_of(frequency: Frequency, now: datetime) -> str:
    """The edition key: ISO week for weekly digests ("2026-W48"), the date for daily ones.

    Both are read in the zone `now` carries (a naive `now` is taken as UTC), so callers pass a
    local time: the reader's slot (`schedule.Slot.at`), or `Settings.local_now` for the list's
    zone. Monday 08:00 in Tokyo is Sunday 23:00 UTC, and belongs to Tokyo's new week.
    """
    if frequency is Frequency.daily:
        return now.date().isoformat()
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def issue_title(issue: Issue, name: str) -> str:
    """The issue's title as emails and pages show it, with the list's name (NEWSLETTER_BRAND_NAME)."""
    return period_title(issue.frequency, issue.period, name)


def period_title(frequency: Frequency, period: str, name: str = "Paper Digest") -> str:
    """ "Paper Digest, week 48 of 2026"; the name defaults to the one `Issue.title` is stored with."""
    if frequency is Frequency.daily:
        return f"{name}, {period}"
    year, week = period.split("-W")
    return f"{name}, week {int(week)} of {year}"


def candidate_pool(session: Session, frequency: Frequency, now: datetime) -> list[Paper]:
    """The period's papers, most trending first; the latest papers if the period has none.

    A paper belongs to the period if it was published or first listed (ingested) in it: the
    Hugging Face listing of this week carries papers whose arXiv date is older.
    """
    since = now - WINDOW[frequency]
    recent = session.exec(
        select(Paper).where(or_(col(Paper.published_at) >= since, col(Paper.ingested_at) >= since))
    ).all()
    pool = (
        recent
        or session.exec(select(Paper).order_by(col(Paper.published_at).desc()).limit(MAX_CANDIDATES)).all()
    )
    pool = sorted(
        pool,
        key=lambda p: (
            -trending_score(
                p.upvotes, p.published_at, now, comments=p.comments or 0, github_stars=p.github_stars or 0
            )
        ),
    )
    return pool[:MAX_CANDIDATES]


def candidate_papers(session: Session, frequency: Frequency, now: datetime) -> list[int]:
    """The ids of `candidate_pool`."""
    return [saved_id(p) for p in candidate_pool(session, frequency, now)]


def get_or_create_issue(session: Session, frequency: Frequency, now: datetime) -> Issue:
    """The issue for this period; created once however many planners race for it. NoPapers
    (nothing made) while the period has no paper: an edition's papers are fixed when it is made."""
    period = period_of(frequency, now)
    stmt = select(Issue).where(Issue.frequency == frequency, Issue.period == period)
    issue = session.exec(stmt).first()
    if issue is not None:
        return issue
    title = period_title(frequency, period)
    table = table_of(Issue)
    pool = candidate_pool(session, frequency, now)
    if not pool:
        raise NoPapers(title)
    session.execute(
        insert_ignore(table, session.get_bind().dialect.name).values(
            frequency=frequency,
            period=period,
            title=title,
            created_at=now,
            paper_ids=[p.id for p in pool],
            papers_snapshot=[paper_snapshot(p) for p in pool],
        )
    )
    session.flush()
    return session.exec(stmt).one()


# ---- per-reader context ---------------------------------------------------------------------


@dataclass
class DigestItem:
    paper: PaperView
    why: str
    more_url: str
    less_url: str
    score: float = 0.0
    for_you: bool = False  # a good match for the reader (ranking's `for_you`), not merely trending


# The headings a digest may have, by name: a personal digest puts its good matches under "For
# you" and the rest under "Also trending"; one with no good match says "Trending" and why.
SECTION_TITLES = {
    "for_you": "For you",
    "also": "Also trending this period",
    "trending": "Trending this period",
}


def sections(sub: Subscriber, items: list[DigestItem]) -> dict[int, str]:
    """Where headings go: {index of the first card under it: section name}. None when every
    paper matches, or when the reader has told us nothing (the intro says it is the trending list)."""
    matched = sum(item.for_you for item in items)
    if not personal(sub) or matched == len(items):
        return {}
    return {0: "for_you", matched: "also"} if matched else {0: "trending"}


def personal(sub: Subscriber) -> bool:
    return bool(sub.interests.strip() or (sub.profile or {}).get("votes"))


@dataclass
class ReaderLinks:
    view_url: str
    preferences_url: str
    unsubscribe_url: str


def reader_links(settings: Settings, sub: Subscriber, issue_id: int) -> ReaderLinks:
    return ReaderLinks(
        view_url=links.view_url(settings, sub, issue_id),
        preferences_url=links.preferences_url(settings, sub),
        unsubscribe_url=links.unsubscribe_url(settings, sub),
    )


def intro_line(sub: Subscriber, items: list[DigestItem]) -> str:
    n, matched = len(items), sum(item.for_you for item in items)  # digest size 1: "1 paper"
    top, papers, are = ("The", "paper", "is") if n == 1 else (f"The {n}", "papers", "are")
    if not personal(sub):
        return f"{top} most popular {papers} of this period. Tell us your interests to rank them for you."
    if matched == n:
        return f"{n} {papers} from this period, ranked for your interests."
    if matched:
        rest, verb = n - matched, "paper this period matches" if matched == 1 else "papers this period match"
        return f"{matched} {verb} your interests; {rest} more {'is' if rest == 1 else 'are'} trending."
    return f"No paper this period matches your interests closely; here {are} {n} trending."


def full_context(
    settings: Settings, issue: Issue, sub: Subscriber, items: list[DigestItem], rl: ReaderLinks
) -> dict[str, Any]:
    return {
        "issue_title": issue_title(issue, settings.brand_name),
        "items": items,
        "sections": sections(sub, items),
        "section_titles": SECTION_TITLES,
        "email": sub.email,
        "intro": intro_line(sub, items),
        "base_url": settings.base_url.rstrip("/"),
        "view_url": rl.view_url,
        "preferences_url": rl.preferences_url,
        "unsubscribe_url": rl.unsubscribe_url,
        "archive_url": links.archive_url(settings),
    }


# ---- render once per issue, assemble per reader (newsletter.assemble) ----------------------


def issue_marker(views: dict[int, PaperView]) -> SlotMarker:
    """The issue's slot marker, for its HTML and its text: a nonce no paper contains."""
    return new_marker(repr(view) for view in views.values())  # repr keeps a run of hex as it is


def marked_context(
    settings: Settings, issue: Issue, views: dict[int, PaperView], marker: SlotMarker
) -> dict[str, Any]:
    """The context of the once-per-issue renders: every paper, `marker(name)` at each slot."""
    why, more, less = marker("why"), marker("more_url"), marker("less_url")
    return {
        "issue_title": issue_title(issue, settings.brand_name),
        "items": [DigestItem(paper=v, why=why, more_url=more, less_url=less) for v in views.values()],
        "sections": {},
        "section_titles": SECTION_TITLES,
        "archive_url": links.archive_url(settings),
        **{name: marker(name) for name in SHELL_SLOTS},
    }


def issue_template(
    settings: Settings, issue: Issue, views: dict[int, PaperView], marker: SlotMarker
) -> IssueTemplate:
    """The digest rendered and inlined once with every paper, cut at the per-reader slots."""
    context = marked_context(settings, issue, views, marker) | {
        "section_marker": marker("section"),
        "card_marker": marker("card"),
        "base_url": settings.base_url.rstrip("/"),
    }
    return IssueTemplate.cut(
        inline_css(html_env(settings).get_template("email/digest/body.html").render(context)), marker
    )


def issue_text_template(
    settings: Settings, issue: Issue, views: dict[int, PaperView], marker: SlotMarker
) -> TextIssueTemplate:
    """The digest's plain text rendered once with every paper, cut at the per-reader slots."""
    context = marked_context(settings, issue, views, marker)
    items = context["items"]
    render = text_template(text_env(settings)).render
    headed = {name: render({**context, "items": items[:1], "sections": {0: name}}) for name in SECTION_TITLES}
    return TextIssueTemplate.cut(render(context), marker, list(views), headed if items else {})


class DigestRenderer:
    """Everything about one issue that does not depend on the reader, computed once."""

    def __init__(
        self, settings: Settings, issue: Issue, papers: list[Paper], now: datetime | None = None
    ) -> None:
        self.settings = settings
        self.issue = issue
        order = {pid: i for i, pid in enumerate(issue.paper_ids)}
        papers = sorted((p for p in papers if p.id in order), key=lambda p: order[saved_id(p)])
        self.views = {saved_id(p): paper_view(p) for p in papers}
        self.index: PaperIndex = build_index([paper_text(p) for p in papers], now or issue.created_at)
        self._ranked: OrderedDict[tuple, tuple[RankedItem, ...]] = OrderedDict()
        self._subjects: dict[int | None, str] = {}  # by first paper: at most one per paper

    @classmethod
    def load(cls, session: Session, settings: Settings, issue: Issue) -> DigestRenderer:
        """The issue's renderer, from its snapshot of the papers (see `issue_papers`)."""
        renderer = cls(settings, issue, papers := issue_papers(session, issue))
        renderer.index = embed_index(session, settings, renderer.index, papers)  # as is without a model
        return renderer

    @cached_property
    def template(self) -> IssueTemplate:
        """The inlined HTML (premailer), built on first use: votes need only the index."""
        return issue_template(self.settings, self.issue, self.views, self.marker)

    @cached_property
    def text(self) -> TextIssueTemplate:
        """The plain text, rendered once (abstracts wrapped once) and cut like the HTML."""
        return issue_text_template(self.settings, self.issue, self.views, self.marker)

    @cached_property
    def marker(self) -> SlotMarker:
        return issue_marker(self.views)

    def rank(self, sub: Subscriber, exclude: Collection[int] = frozenset()) -> list[RankedItem]:
        """The reader's papers, best first. Ranking is a pure function of the interests, the
        learned profile, the papers already sent and the limit, and many readers share those
        (no interests at all, the same few words), so the last RANK_CACHE_SIZE rankings of the
        issue are remembered."""
        profile = sub.profile or None
        key = (
            sub.interests,
            json.dumps(profile, sort_keys=True) if profile else "",
            frozenset(exclude),
            sub.max_papers,
        )
        ranked = self._ranked.get(key)
        if ranked is None:
            ranked = tuple(
                rank_papers(self.index, sub.interests, profile=profile, exclude=exclude, limit=sub.max_papers)
            )
            self._ranked[key] = ranked
            if len(self._ranked) > RANK_CACHE_SIZE:
                self._ranked.popitem(last=False)
        else:
            self._ranked.move_to_end(key)
        return list(ranked)

    def rank_ids(self, sub: Subscriber, paper_ids: list[int]) -> list[RankedItem]:
        """The reader's ranking restricted to `paper_ids`, in the order given (as sent)."""
        others = set(self.views) - set(paper_ids)
        ranked = {
            r.paper_id: r
            for r in rank_papers(
                self.index, sub.interests, profile=sub.profile or None, exclude=others, limit=len(paper_ids)
            )
        }
        return [ranked[i] for i in paper_ids if i in ranked]

    def items(self, sub: Subscriber, ranked: list[RankedItem]) -> list[DigestItem]:
        """The cards, good matches first (each group in ranked order): see `sections`."""
        s, iid = self.settings, saved_id(self.issue)
        vote = links.vote_urls(s, sub, iid)
        return [
            DigestItem(
                paper=self.views[r.paper_id],
                why=r.why,
                score=r.score,
                more_url=vote(r.paper_id, 1),
                less_url=vote(r.paper_id, -1),
                for_you=r.for_you,
            )
            for r in sorted(ranked, key=lambda r: not r.for_you)
        ]

    def render(self, sub: Subscriber, items: list[DigestItem]) -> RenderedEmail:
        """Subject, plain text and inlined HTML for one reader (no CSS inlining here)."""
        subject, text, html = self.parts(sub, items)
        return RenderedEmail(subject, pieces_text(text), pieces_text(html))

    def parts(self, sub: Subscriber, items: list[DigestItem]) -> tuple[str, Pieces, Pieces]:
        """`render` as the assembler's pieces: the message is built from them (`newsletter.mail.qp`)
        without joining them into strings first."""
        rl = reader_links(self.settings, sub, saved_id(self.issue))
        context = full_context(self.settings, self.issue, sub, items, rl)
        cards = [(i.paper.id, {"why": i.why, "more_url": i.more_url, "less_url": i.less_url}) for i in items]
        values = {name: context[name] for name in SHELL_SLOTS}
        text, html = (part.pieces(cards, values, context["sections"]) for part in (self.text, self.template))
        return self.subject(items), text, html

    def subject(self, items: list[DigestItem]) -> str:
        """The subject names the issue and the first card alone, so it is rendered once per first
        paper, from those two only (a template that wants more fails: StrictUndefined)."""
        first = items[0].paper.id if items else None
        if first not in self._subjects:
            context = {"issue_title": issue_title(self.issue, self.settings.brand_name), "items": items[:1]}
            self._subjects[first] = render_subject(self.settings, "digest", context)
        return self._subjects[first]


# ---- one renderer per issue per process -----------------------------------------------------

_renderers: OrderedDict[tuple[str, int], DigestRenderer] = OrderedDict()
RENDERERS_KEPT = 4


def renderer_for(settings: Settings, issue_id: int) -> DigestRenderer:
    """The issue's renderer, built (and premailer run) once per process, not per batch."""
    key = (settings.database_url, issue_id)
    if key not in _renderers:
        with session_scope(settings.database_url) as session:
            issue = session.get(Issue, issue_id)
            if issue is None:
                raise LookupError(f"issue {issue_id} does not exist")
            _renderers[key] = DigestRenderer.load(session, settings, issue)
        while len(_renderers) > RENDERERS_KEPT:
            _renderers.popitem(last=False)
    return _renderers[key]


def reader_view(settings: Settings, issue_id: int, sub: Subscriber, sent: list[int] | None) -> str:
    """One reader's digest as a page: the papers `sent` to them, in that order, or (None, nothing
    sent yet) the papers they would be sent now. `ledger.sent_papers` gives `sent`."""
    renderer = renderer_for(settings, issue_id)
    ranked = renderer.rank_ids(sub, sent) if sent else renderer.rank(sub)
    return renderer.render(sub, renderer.items(sub, ranked)).html
