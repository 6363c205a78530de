"""What readers and mail servers tell us back: votes on papers, bounces and complaints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlmodel import Session

from newsletter import ledger
from newsletter import subscriptions as subs
from newsletter.bounces.events import BounceEvent, record_bounce
from newsletter.config import Settings
from newsletter.db import insert_ignore, rows_written
from newsletter.digests import renderer_for
from newsletter.links import VOTE_DIRECTIONS
from newsletter.models import (
    BounceKind,
    Issue,
    Paper,
    Subscriber,
    SubscriberStatus,
    Vote,
    saved_id,
    table_of,
    utcnow,
)
from newsletter.ranking import update_profile
from newsletter.tokens import Purpose, TokenError, TokenReason
from newsletter.validation import normalise_email


@dataclass(frozen=True)
class VoteRequest:
    subscriber_id: int
    issue_id: int
    paper_id: int
    direction: int
    paper_title: str


def read_vote(
    session: Session,
    settings: Settings,
    token: str,
    paper_id: str | None = None,
    direction: str | None = None,
) -> VoteRequest:
    """Decode a "more / less like this" link; TokenError if forged or not one we sent. A link is
    `/vote/{token}/{paper_id}/more|less`, its token naming the reader and the issue; links sent
    before that named the paper and the direction inside the token (`/vote/{token}`)."""
    sub, extra = subs.subscriber_for_token(session, settings, Purpose.vote, token)
    if sub.status is not SubscriberStatus.confirmed:  # said on the page, before any button
        raise TokenError(TokenReason.inactive)
    issue_id, (pid, vote) = extra.get("i"), _vote_target(extra, paper_id, direction)
    issue = session.get(Issue, issue_id) if isinstance(issue_id, int) else None
    paper = session.get(Paper, pid) if isinstance(pid, int) else None
    if issue is None or paper is None or vote not in (1, -1) or pid not in issue.paper_ids:
        raise TokenError(TokenReason.forged)
    return VoteRequest(saved_id(sub), saved_id(issue), saved_id(paper), int(vote), paper.title)


VOTE_WORDS = {word: direction for direction, word in VOTE_DIRECTIONS.items()}  # "more" -> 1


def _vote_target(extra: dict, paper_id: str | None, direction: str | None) -> tuple[Any, Any]:
    """(paper id, direction) from the path, or from the token of a link sent before (the path
    then has neither; a token that names them with a path added is refused)."""
    if paper_id is None:
        return extra.get("p"), extra.get("d")
    if "p" in extra or "d" in extra or not (paper_id.isascii() and paper_id.isdigit()) or len(paper_id) > 18:
        raise TokenError(TokenReason.forged)
    return int(paper_id), VOTE_WORDS.get(direction or "")


VoteOutcome = Literal["recorded", "already_voted", "too_soon"]


def record_vote(session: Session, settings: Settings, vote: VoteRequest) -> VoteOutcome:
    """Record the vote once per (issue, paper, reader) and fold it into the reader's profile.

    "already_voted" when this paper of this issue already has the reader's vote; "too_soon"
    (nothing recorded) within `vote_grace_seconds` of sending, where votes are taken for a mail
    scanner's: the reader was told "You have already voted", and their vote was lost.
    """
    sub = session.get(Subscriber, vote.subscriber_id)
    if sub is None:
        raise TokenError(TokenReason.gone)
    if sub.status is not SubscriberStatus.confirmed:
        raise TokenError(TokenReason.inactive)
    if _too_soon(session, settings, vote):
        return "too_soon"
    new = Vote(
        issue_id=vote.issue_id,
        paper_id=vote.paper_id,
        subscriber_id=vote.subscriber_id,
        direction=vote.direction,
    ).model_dump(exclude={"id"})
    statement = insert_ignore(table_of(Vote), session.get_bind().dialect.name).values(**new)
    if rows_written(session, statement) != 1:
        return "already_voted"  # one vote per paper of an issue: a replay, or the other button
    # Votes at once each read the profile before the others wrote theirs, and the last to write
    # back its one vote won. So it is read again, locked until commit: on PostgreSQL by a row
    # lock (NO KEY UPDATE: FOR UPDATE would wait on the KEY SHARE each vote's foreign key holds,
    # two votes each on the other), on SQLite by the INSERT above, which took its one writer's
    # lock (a SAVEPOINT around it let go at once: SQLite commits a transaction it began itself).
    session.refresh(sub, with_for_update={"key_share": True})
    index = renderer_for(settings, vote.issue_id).index
    sub.profile = update_profile(sub.profile or None, index, vote.paper_id, vote.direction)
    session.add(sub)
    return "recorded"


def reset_profile(session: Session, sub: Subscriber) -> None:
    """Forget what the reader's votes taught the ranking; their stated interests stay."""
    sub.profile = {}
    session.add(sub)


def _too_soon(session: Session, settings: Settings, vote: VoteRequest) -> bool:
    if settings.vote_grace_seconds <= 0:
        return False
    sent_at = ledger.sent_at(session, vote.issue_id, vote.subscriber_id)
    return sent_at is not None and utcnow() - sent_at < timedelta(seconds=settings.vote_grace_seconds)


# The generic webhook's types, as the bounce events they are.
WEBHOOK_KINDS = {
    "hard_bounce": BounceKind.hard,
    "soft_bounce": BounceKind.soft,
    "complaint": BounceKind.complaint,
}


def apply_bounce_event(
    session: Session, settings: Settings, kind: str, address: str, reason: str = ""
) -> bool:
    """The generic webhook's event, recorded like every other (`bounces.events.record_bounce`);
    True if the reader's state changed. InvalidInput for an address that is not one."""
    normalise_email(address)
    event = BounceEvent(kind=WEBHOOK_KINDS[kind], address=address, diagnostic=reason, source="webhook")
    return record_bounce(session, settings, event).changed
