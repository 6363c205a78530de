"""The store: subscribers, consent, suppressions, papers, issues, deliveries, journey emails, votes."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import deferred
from sqlmodel import Field, SQLModel

# SQLite hands out max(rowid) + 1, so the id of an erased last row came back for the next one;
# AUTOINCREMENT never reuses an id. Every table has it (PostgreSQL sequences never reuse).
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}
# Ids are INTEGER columns: 32 bits on PostgreSQL. A larger id names no row, and asking for one is
# an error of the database (not a "no such row"), so every id taken from outside stops here.
MAX_ROW_ID = 2**31 - 1


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (SQLModel stores aware datetimes and returns them in UTC)."""
    return datetime.now(UTC)


class HasId(Protocol):
    @property
    def id(self) -> int | None: ...


def saved_id(row: HasId) -> int:
    """The id of a row the database has given one; a RuntimeError (a bug, never bad input) if it
    was never flushed. For ids the types leave optional because a new row has none yet."""
    if row.id is None:
        raise RuntimeError(f"{type(row).__name__} has no id: the row was never flushed")
    return row.id


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy Core table of a table model, for Core statements (INSERT … ON CONFLICT,
    UPDATE … RETURNING on a connection)."""
    return model.__table__  # type: ignore[attr-defined]  # set on table=True models, not declared by SQLModel


def new_token_key() -> str:
    """A subscriber's link key: 128 random bits, URL-safe, never derived from the row id."""
    return secrets.token_urlsafe(16)


class SubscriberStatus(str, enum.Enum):
    pending = "pending"
    confirmed = "confirmed"
    unsubscribed = "unsubscribed"
    bounced = "bounced"


# Readers who left: only their own fresh signup brings them back (an import, an operator's add
# without --resubscribe, never does).
LEFT = (SubscriberStatus.unsubscribed, SubscriberStatus.bounced)


class Frequency(str, enum.Enum):
    weekly = "weekly"
    daily = "daily"


class DeliveryState(str, enum.Enum):
    pending = "pending"  # planned, not yet tried
    sending = "sending"  # claimed by a worker; SMTP in progress
    deferred = "deferred"  # a transient failure; will be retried
    sent = "sent"  # the server answered 250
    failed = "failed"  # permanent failure (5xx)
    skipped = "skipped"  # no longer due at send time (unsubscribed, bounced, nothing new)


class SubscriberBase(SQLModel):
    email: str = Field(max_length=320)
    interests: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    frequency: Frequency = Field(default=Frequency.weekly)
    max_papers: int = Field(default=10, ge=1, le=50)
    # The reader's slot (newsletter/schedule.py); None follows the list's NEWSLETTER_DIGEST_WEEKDAY
    # and NEWSLETTER_TIMEZONE, so changing those moves every reader who never chose.
    weekday: int | None = Field(default=None, ge=0, le=6)  # 0 = Monday; weekly readers only
    timezone: str | None = Field(default=None, max_length=64)  # an IANA name, checked on input


class Subscriber(SubscriberBase, table=True):
    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    email_key: str = Field(max_length=320, unique=True, index=True)  # validation.email_key
    status: SubscriberStatus = Field(default=SubscriberStatus.pending, index=True)
    # What links name instead of the id: a new row (even one with a reused id) never matches an
    # old link. The column default also covers Core inserts (INSERT … ON CONFLICT, bulk loads).
    token_key: str = Field(
        default_factory=new_token_key,
        sa_column=Column(String(32), nullable=False, unique=True, index=True, default=new_token_key),
    )
    # Bumped whenever outstanding links must stop working (a confirmation used, a re-import).
    token_version: int = Field(default=0)
    # Interests asked for by a signup of a known address, applied once the link is followed:
    # whoever signed up may not own the address, so the owner's interests stay until then.
    pending_interests: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Papers a signup ticked ("papers like these"), waiting like its interests for the link (0009)
    pending_likes: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    confirm_sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    # Soft bounces so far (newsletter/bounces/scoring.py): the score as of `bounce_score_at`,
    # when the last soft bounce counted; it decays from there.
    bounce_score: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    bounce_score_at: datetime | None = None
    # Learned from feedback: {"terms": {term: weight}, "liked": [titles], "votes": n}
    profile: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class SubscriberPublic(SubscriberBase):
    """What the operator sees of a subscriber (no tokens, no learned profile)."""

    id: int
    status: SubscriberStatus
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


class ConsentEvent(SQLModel, table=True):
    """Append-only record of consent: who, when, from where, which wording."""

    __tablename__ = "consent_event"
    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int | None = Field(default=None, index=True)
    email_key: str = Field(max_length=320, index=True)
    event: str = Field(max_length=40)
    at: datetime = Field(default_factory=utcnow)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    wording: str | None = Field(default=None, sa_column=Column(Text))


class Suppression(SQLModel, table=True):
    """An erased address, kept only as a hash (`subscriptions.address_hash`) with why and when,
    so that an operator's import cannot bring the person back (listmonk's blocklist, Mailman's
    ban list). No other personal data."""

    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(max_length=64, unique=True, index=True)
    reason: str = Field(max_length=40)
    at: datetime = Field(default_factory=utcnow)
    # Stored before migration 0014: the hash is of the case-folded address (suppression.folded_hash)
    folded: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class Paper(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("title_key", name="uq_paper_title_key"), NEVER_REUSE_IDS)
    id: int | None = Field(default=None, primary_key=True)
    arxiv_id: str | None = Field(default=None, max_length=40, unique=True, index=True)
    title_key: str = Field(max_length=500)
    title: str = Field(sa_column=Column(Text, nullable=False))
    abstract: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    url: str | None = Field(default=None, max_length=1000)  # landing page
    arxiv_url: str | None = Field(default=None, max_length=1000)
    pdf_url: str | None = Field(default=None, max_length=1000)
    code_url: str | None = Field(default=None, max_length=1000)
    project_url: str | None = Field(default=None, max_length=1000)
    thumbnail: str | None = Field(default=None, max_length=1000)
    upvotes: int = Field(default=0)
    published_at: datetime = Field(default_factory=utcnow, index=True)
    ingested_at: datetime = Field(default_factory=utcnow)
    source: str = Field(default="file", max_length=40)
    # What Hugging Face's listing adds (migration 0008): a one-line TL;DR, who posted it, and
    # engagement that trending counts with the upvotes.
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default="", server_default=""))
    organization: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})
    github_stars: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    comments: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PaperEmbedding(SQLModel, table=True):
    """A paper's unit vector under one embedding model (`newsletter.embeddings`), computed once:
    float32 bytes, little-endian. Gone with its paper."""

    __tablename__ = "paper_embedding"
    __table_args__ = (UniqueConstraint("paper_id", "model", name="uq_paper_embedding"), NEVER_REUSE_IDS)
    id: int | None = Field(default=None, primary_key=True)
    paper_id: int = Field(
        sa_column=Column(Integer, ForeignKey("paper.id", ondelete="CASCADE"), nullable=False)
    )
    model: str = Field(max_length=120)
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


_papers_snapshot = Column("papers_snapshot", JSON, nullable=True)


class Issue(SQLModel, table=True):
    """One edition: a period (ISO week or day) for one frequency, with its papers frozen."""

    __table_args__ = (UniqueConstraint("frequency", "period", name="uq_issue_period"), NEVER_REUSE_IDS)
    # The snapshot (~2 KB a paper) is loaded only when read: lists of issues never need it.
    __mapper_args__ = {"properties": {"papers_snapshot": deferred(_papers_snapshot)}}
    id: int | None = Field(default=None, primary_key=True)
    frequency: Frequency = Field(default=Frequency.weekly)
    period: str = Field(max_length=20)  # "2026-W48" or "2026-11-26"
    title: str = Field(max_length=200)
    paper_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # What the issue shows and ranks of each paper, as planned (digests.paper_snapshot), so a later
    # ingest cannot change a planned issue. None for issues planned before migration 0005.
    papers_snapshot: list[dict[str, Any]] | None = Field(default=None, sa_column=_papers_snapshot)
    created_at: datetime = Field(default_factory=utcnow)
    planned_at: datetime | None = None
    # Paused: the relay refused too many of its messages in a row; nothing is sent until an
    # operator resumes it (`newsletter issues resume`).
    paused_at: datetime | None = None
    pause_reason: str | None = Field(default=None, max_length=1000)
    send_errors: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # refusals in a row


class Delivery(SQLModel, table=True):
    """The ledger: one row per (issue, subscriber); the claim makes sending idempotent."""

    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery_issue_subscriber"),
        Index("ix_delivery_issue_state", "issue_id", "state"),
        NEVER_REUSE_IDS,
    )
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    state: DeliveryState = Field(default=DeliveryState.pending)
    attempts: int = Field(default=0)
    claimed_at: datetime | None = None
    claimed_by: str | None = Field(default=None, max_length=32)  # the batch run holding the claim
    sent_at: datetime | None = None
    message_id: str | None = Field(default=None, max_length=255)
    smtp_code: int | None = None
    error: str | None = Field(default=None, max_length=1000)
    paper_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # When the row became due: planned (on the reader's own day, which may be days after the
    # issue was made), or put back by a resume. Unsent DEFERRED_RETRY_DAYS later it is given up.
    due_since: datetime = Field(
        default_factory=utcnow, sa_column_kwargs={"server_default": text("CURRENT_TIMESTAMP")}
    )


# The journey emails that are not finished yet: at most one per subscriber and kind (see below).
UNSENT_JOURNEY_EMAIL = text("state IN ('pending', 'deferred', 'sending')")


class JourneyEmail(SQLModel, table=True):
    """The outbox of journey emails (confirm, welcome, already subscribed): one row per email,
    written in the transaction that calls for it, claimed before SMTP like a `Delivery`.

    `next_attempt_at` is when beat's sweep queues the row again if no job has sent it by then.
    At most one unsent row per (subscriber, kind): asking again re-queues that row.
    """

    __tablename__ = "journey_email"
    __table_args__ = (
        Index(
            "uq_journey_email_unsent",
            "subscriber_id",
            "kind",
            unique=True,
            postgresql_where=UNSENT_JOURNEY_EMAIL,
            sqlite_where=UNSENT_JOURNEY_EMAIL,
        ),
        Index("ix_journey_email_state_next", "state", "next_attempt_at"),
        NEVER_REUSE_IDS,
    )
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    kind: str = Field(max_length=32)  # a template name: confirm, welcome, already_subscribed
    state: DeliveryState = Field(default=DeliveryState.pending)
    attempts: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    claimed_at: datetime | None = None
    claimed_by: str | None = Field(default=None, max_length=32)
    sent_at: datetime | None = None
    message_id: str | None = Field(default=None, max_length=255)
    smtp_code: int | None = None
    error: str | None = Field(default=None, max_length=1000)


class Vote(SQLModel, table=True):
    """A reader's "more / less like this" on one paper of one issue; one per triple."""

    __table_args__ = (
        UniqueConstraint("issue_id", "paper_id", "subscriber_id", name="uq_vote"),
        NEVER_REUSE_IDS,
    )
    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id")
    paper_id: int = Field(foreign_key="paper.id")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    direction: int  # +1 more like this, -1 less like this
    at: datetime = Field(default_factory=utcnow)


class BounceKind(str, enum.Enum):
    hard = "hard"  # the address does not work (5.1.x, 5.2.1, 5.4.1 …)
    soft = "soft"  # it may again (4.x.x, a full mailbox 5.2.2, a message too big 5.3.4)
    policy = "policy"  # refused for what we sent or who we are (5.7.x): about the issue, not the reader
    complaint = "complaint"  # marked as spam (ARF, a provider's feedback loop)
    unsubscribe = "unsubscribe"  # a mailto: unsubscribe


# A bounce named by its VERP token counts once per message and kind: a replayed DSN changes nothing.
_VERP_DELIVERY = text("delivery_id IS NOT NULL")
_VERP_JOURNEY = text("journey_email_id IS NOT NULL")


class BounceRecord(SQLModel, table=True):
    """One bounce, complaint or mailto: unsubscribe about a subscriber, as it arrived, and what
    it did (`effect`). Erased with the subscriber."""

    __tablename__ = "bounce_event"
    __table_args__ = (
        Index(
            "uq_bounce_event_delivery",
            "delivery_id",
            "kind",
            unique=True,
            postgresql_where=_VERP_DELIVERY,
            sqlite_where=_VERP_DELIVERY,
        ),
        Index(
            "uq_bounce_event_journey",
            "journey_email_id",
            "kind",
            unique=True,
            postgresql_where=_VERP_JOURNEY,
            sqlite_where=_VERP_JOURNEY,
        ),
        Index("ix_bounce_event_issue_kind", "issue_id", "kind"),
        NEVER_REUSE_IDS,
    )
    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    delivery_id: int | None = None
    journey_email_id: int | None = None
    issue_id: int | None = None
    kind: BounceKind
    status: str = Field(default="", max_length=16)  # RFC 3463 enhanced status, e.g. "5.1.1"
    diagnostic: str = Field(default="", max_length=1000)
    source: str = Field(max_length=16)  # dsn, arf, mailto, ses, mailgun, postmark, webhook
    effect: str = Field(max_length=16)  # bounced, scored, noted, policy, unsubscribed
    received_at: datetime = Field(default_factory=utcnow)
    recorded_at: datetime = Field(default_factory=utcnow)


class EndedAdminSession(SQLModel, table=True):
    """An admin session logged out before its cookie expired. The cookie is signed, so it stays
    valid until it expires wherever it was copied to; naming its random id here refuses it from
    the logout on. Kept until the cookie would have expired anyway."""

    __tablename__ = "ended_admin_session"
    __table_args__ = NEVER_REUSE_IDS
    id: int | None = Field(default=None, primary_key=True)
    sid: str = Field(max_length=32, unique=True)
    expires_at: datetime
