"""A reader's digest built from the store's current papers without an issue or a ledger row:
what `newsletter preview` shows and what a test send (`testsend.py`) mails."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.digests import DigestRenderer, candidate_papers, period_of
from newsletter.embeddings import embed_index
from newsletter.errors import NotFound
from newsletter.ledger import sent_history
from newsletter.models import Frequency, Issue, Paper, Subscriber, new_token_key
from newsletter.validation import clean_interests

PREVIEW_ADDRESS = "preview@example.org"


def preview_reader(
    session: Session, settings: Settings, *, email: str | None, interests: str | None, own_links: bool = True
) -> Subscriber:
    """A detached copy of the subscriber `email` (OperatorError if there is none), or a reader
    with just `interests`. Changing it changes nothing stored. Without `own_links` its links
    name no one, so a copy mailed elsewhere cannot unsubscribe or vote for the real reader."""
    if not email:
        return Subscriber(
            id=0,
            email=PREVIEW_ADDRESS,
            email_key=PREVIEW_ADDRESS,
            interests=clean_interests(interests),
            max_papers=settings.default_max_papers,
        )
    sub = subs.find_by_email(session, email)
    if sub is None:
        raise NotFound(f"no subscriber with address {email}")
    return Subscriber(
        id=sub.id,
        email=sub.email,
        email_key=sub.email_key,
        interests=sub.interests,
        profile=dict(sub.profile or {}),
        token_key=sub.token_key if own_links else new_token_key(),
        token_version=sub.token_version,
        status=sub.status,
        frequency=sub.frequency,
        max_papers=sub.max_papers,
    )


def papers_sent_to(session: Session, reader: Subscriber) -> set[int]:
    """The papers a real reader has been sent: their next digest leaves them out, and so must
    a preview of it (it showed papers they already had, which the digest never sends again)."""
    return sent_history(session.connection(), [reader.id], 0)[reader.id] if reader.id else set()


def preview_renderer(
    session: Session, settings: Settings, frequency: Frequency, now: datetime
) -> DigestRenderer:
    """A renderer over this period's candidate papers, as an unsaved issue (id 0)."""
    issue = Issue(
        id=0,
        frequency=frequency,
        period=period_of(frequency, now),
        title="Preview",
        paper_ids=candidate_papers(session, frequency, now),
        created_at=now,
    )
    papers = session.exec(select(Paper).where(col(Paper.id).in_(issue.paper_ids))).all()
    renderer = DigestRenderer(settings, issue, list(papers), now)
    renderer.index = embed_index(session, settings, renderer.index, papers)
    return renderer
