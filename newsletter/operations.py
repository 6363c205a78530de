"""Operator actions the admin API and pages need beyond `admin.py`: a page of subscribers,
changing one, pausing an issue, starting a send without waiting, the most-voted papers.

Plain functions that take the settings and return pydantic models (the API returns them as
they are); mistakes raise `OperatorError`, unknown ids and addresses `NotFound`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import case, func
from sqlmodel import col, select

from newsletter import jobs
from newsletter import subscriptions as subs
from newsletter.admin import show_issue
from newsletter.config import Settings
from newsletter.dashboard import address_contains
from newsletter.db import get_engine, session_scope
from newsletter.delivery import dispatch_issue
from newsletter.errors import NotFound, OperatorError
from newsletter.ledger import plan_issue
from newsletter.models import (
    Frequency,
    Issue,
    Paper,
    Subscriber,
    SubscriberPublic,
    SubscriberStatus,
    Vote,
    saved_id,
)
from newsletter.pauses import pause_issue as pause_row
from newsletter.preferences import apply_preferences
from newsletter.validation import WholeNumber

MAX_PAGE = 1000
API_CLIENT = subs.Client(user_agent="admin api")  # recorded in consent rows of changes made through the API


class SubscriberPage(BaseModel):
    """Up to `limit` subscribers in id order; `next_after` continues the list (None: the end)."""

    rows: list[SubscriberPublic]
    next_after: int | None = None


class SubscriberChange(BaseModel):
    """Preferences to set; a field left out keeps its value, and an empty weekday or time zone
    ("") is the list's. Any other field is refused (a misspelt one would change nothing)."""

    model_config = ConfigDict(extra="forbid")

    interests: str | None = Field(default=None, max_length=2000)
    frequency: Frequency | None = None
    max_papers: WholeNumber | None = Field(default=None, ge=1, le=50)
    weekday: Annotated[WholeNumber, Field(ge=0, le=6)] | Literal[""] | None = Field(
        default=None, description='0 = Monday; "" for the list\'s day'
    )
    timezone: str | None = Field(
        default=None, max_length=64, description='An IANA name; "" for the list\'s zone'
    )


class IssueSummary(BaseModel):
    """An issue with its delivery counts by state (pending, sending, deferred, sent, failed, skipped)."""

    id: int
    frequency: Frequency
    period: str
    title: str
    papers: int
    created_at: datetime
    counts: dict[str, int]
    paused_at: datetime | None
    pause_reason: str | None


class SendStarted(BaseModel):
    """An issue planned and handed to the workers: how many deliveries the plan added."""

    issue_id: int
    period: str
    planned: int


class VotedPaper(BaseModel):
    paper_id: int
    title: str
    up: int  # "more like this"
    down: int  # "less like this"


def subscriber_page(
    settings: Settings,
    *,
    status: SubscriberStatus | None = None,
    frequency: Frequency | None = None,
    search: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> SubscriberPage:
    """Subscribers with id > `after`, optionally of one status and frequency, and whose address
    contains `search` (any case); pass the answer's `next_after` as `after` for the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise OperatorError(f"limit must be between 1 and {MAX_PAGE}")
    stmt = select(Subscriber).where(col(Subscriber.id) > after).order_by(col(Subscriber.id)).limit(limit + 1)
    if status is not None:
        stmt = stmt.where(Subscriber.status == status)
    if frequency is not None:
        stmt = stmt.where(Subscriber.frequency == frequency)
    if search:
        stmt = stmt.where(address_contains(search))
    with session_scope(settings.database_url) as session:
        rows = [SubscriberPublic.model_validate(s) for s in session.exec(stmt)]
    more = len(rows) > limit
    return SubscriberPage(rows=rows[:limit], next_after=rows[limit - 1].id if more else None)


def email_of(settings: Settings, subscriber_id: int) -> str:
    """The address of a subscriber by id (NotFound if there is none)."""
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None:
            raise NotFound(f"no subscriber with id {subscriber_id}")
        return sub.email


def change_subscriber(
    settings: Settings, email: str, change: SubscriberChange, client: subs.Client = API_CLIENT
) -> SubscriberPublic:
    """Set a pending or confirmed subscriber's preferences (recorded as a consent row)."""
    with session_scope(settings.database_url) as session:
        sub = subs.find_by_email(session, email)
        if sub is None:
            raise NotFound(f"no subscriber with address {email}")
        if sub.status not in (SubscriberStatus.pending, SubscriberStatus.confirmed):
            raise OperatorError(f"{sub.email} is {sub.status.value}; only their own signup changes that")
        values: dict[str, Any] = change.model_dump(exclude_none=True, exclude={"weekday", "timezone"})
        values["schedule"] = (change.weekday, change.timezone)  # None keeps that one as it is
        before = _preferences(sub)
        apply_preferences(sub, **values)
        if _preferences(sub) != before:  # a change that changes nothing is not one in the log
            subs.record_consent(session, sub, "preferences_changed", client)
        return SubscriberPublic.model_validate(sub)


def _preferences(sub: Subscriber) -> tuple[Any, ...]:
    return (sub.interests, sub.frequency, sub.max_papers, sub.weekday, sub.timezone)


def pause_issue(settings: Settings, issue_id: int, reason: str) -> IssueSummary:
    """Stop an issue's sending until it is resumed; OperatorError if it is paused already."""
    if not _exists(settings, issue_id):
        raise NotFound(f"no issue with id {issue_id}")
    with get_engine(settings.database_url).connect() as conn:
        if not pause_row(conn, issue_id, f"paused by the operator: {reason}".strip(": ")):
            raise OperatorError(f"issue {issue_id} is paused already")
    return IssueSummary.model_validate(show_issue(settings, issue_id))


def _exists(settings: Settings, issue_id: int) -> bool:
    with session_scope(settings.database_url) as session:
        return session.get(Issue, issue_id) is not None


def start_send(settings: Settings, frequency: Frequency, now: datetime | None = None) -> SendStarted:
    """Plan this period's issue and dispatch it after the commit (to the workers, or, without a
    broker, in this process once the caller is done); never waits for the sending."""
    with session_scope(settings.database_url) as session:
        issue, planned = plan_issue(session, frequency, settings.local_now(now))
        jobs.enqueue(session, settings, dispatch_issue, saved_id(issue))
    return SendStarted(issue_id=saved_id(issue), period=issue.period, planned=planned)


def top_voted(settings: Settings, issue_id: int, limit: int = 10) -> list[VotedPaper]:
    """The issue's papers with the most "more like this" votes (net of "less"), best first."""
    up = func.sum(case((col(Vote.direction) > 0, 1), else_=0))
    down = func.sum(case((col(Vote.direction) < 0, 1), else_=0))
    stmt = (
        select(Vote.paper_id, Paper.title, up, down)
        .join(Paper, col(Paper.id) == col(Vote.paper_id))
        .where(Vote.issue_id == issue_id)
        .group_by(col(Vote.paper_id), col(Paper.title))
        .order_by((up - down).desc(), up.desc(), col(Vote.paper_id))
        .limit(limit)
    )
    with session_scope(settings.database_url) as session:
        if session.get(Issue, issue_id) is None:
            raise NotFound(f"no issue with id {issue_id}")
        return [VotedPaper(paper_id=p, title=t, up=u or 0, down=d or 0) for p, t, u, d in session.exec(stmt)]
