"""Operator actions behind the CLI: plain functions that take the settings and return data.

Mistakes the operator can fix raise `OperatorError`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from sqlmodel import Session, col, select

from newsletter import delivery, jobs, liveness, privacy, suppression
from newsletter import subscriptions as subs
from newsletter.bounces.reports import bounce_counts
from newsletter.config import Settings
from newsletter.db import get_engine, session_scope
from newsletter.delivery import dispatch_issue
from newsletter.digests import candidate_papers, period_of
from newsletter.errors import NotFound, OperatorError
from newsletter.ledger import delivery_counts, plan_issue
from newsletter.models import (
    LEFT,
    Delivery,
    Frequency,
    Issue,
    Paper,
    Subscriber,
    SubscriberPublic,
    SubscriberStatus,
    saved_id,
)
from newsletter.papers import SourceError
from newsletter.papers.ingest import load_source, store_fetched
from newsletter.preferences import apply_preferences
from newsletter.previews import papers_sent_to, preview_reader, preview_renderer
from newsletter.stats import reader_count, subscriber_counts
from newsletter.validation import InvalidInput, normalise_email

CLI_CLIENT = subs.Client(user_agent="cli")  # recorded in consent rows of operator actions
PROGRESS_LINE_SECONDS = 10  # where no bar can be drawn (a log, cron), a progress line this often
# Counting an issue's rows by state reads all of them: the wait asks every 0.5 s, and once per
# POLL_ROWS_PER_SECOND rows for larger issues (200,000 readers: every 2 s; at most every 5 s).
POLL_ROWS_PER_SECOND = 100_000


@dataclass(frozen=True)
class Removal:
    """What `remove_subscriber` did: the address and its status now ("erased" if gone)."""

    email: str
    status: str


def _subscriber(session: Session, email: str) -> Subscriber:
    sub = subs.find_by_email(session, email)
    if sub is None:
        raise NotFound(f"no subscriber with address {email}")
    return sub


def list_subscribers(settings: Settings, status: str | None = None) -> list[SubscriberPublic]:
    stmt = select(Subscriber).order_by(col(Subscriber.id))
    if status:
        try:
            stmt = stmt.where(Subscriber.status == SubscriberStatus(status))
        except ValueError as exc:
            allowed = ", ".join(s.value for s in SubscriberStatus)
            raise OperatorError(f"unknown status {status!r}; use one of {allowed}") from exc
    with session_scope(settings.database_url) as session:
        return [SubscriberPublic.model_validate(s) for s in session.exec(stmt)]


def _left_on(sub: Subscriber) -> str:
    return f"{sub.unsubscribed_at or sub.updated_at:%Y-%m-%d}"


def add_subscriber(
    settings: Settings,
    email: str,
    interests: str,
    frequency: str,
    max_papers: int,
    confirmed: bool,
    client: subs.Client = CLI_CLIENT,
    resubscribe: bool = False,
) -> SubscriberPublic:
    """Import a subscriber whose consent you hold (`confirmed`), or start the double opt-in.
    Either way an erased (suppressed) address is refused. The preferences given are a new
    address's; a known reader keeps theirs (`operations.change_subscriber` changes them), and without
    `confirmed` the interests asked for wait for the confirmation link, as a signup's do. A
    reader who unsubscribed or bounced is confirmed again only with `resubscribe`: their leaving
    is newer than the consent an operator holds (a CSV import never brings them back either)."""
    with session_scope(settings.database_url) as session:
        known = subs.find_by_email(session, email)
        if confirmed and known is not None and known.status in LEFT and not resubscribe:
            raise OperatorError(
                f"{known.email} {known.status.value} on {_left_on(known)}: adding them as confirmed "
                "would mail them again without their say. Without --confirmed they get a confirmation "
                "email; if they asked you to add them back, repeat with --resubscribe."
            )
        if confirmed:
            if known is not None:  # what the reader chose, or asked for in a signup not yet confirmed
                interests = known.interests if known.pending_interests is None else known.pending_interests
                frequency, max_papers = known.frequency.value, known.max_papers
            sub = subs.import_subscriber(
                session,
                settings,
                email,
                interests=interests,
                frequency=frequency,
                max_papers=max_papers,
                client=client,
            )
        else:
            suppression.refuse_suppressed(session, normalise_email(email)[1], email)
            subs.request_subscription(session, settings, email, interests, client)
            sub = _subscriber(session, email)
            if known is None:
                apply_preferences(sub, frequency=frequency, max_papers=max_papers)
        return SubscriberPublic.model_validate(sub)


def is_known(settings: Settings, email: str) -> bool:
    """Whether the address is already a subscriber (any status); False for an invalid one."""
    with session_scope(settings.database_url) as session:
        try:
            return subs.find_by_email(session, email) is not None
        except InvalidInput:
            return False


def remove_subscriber(
    settings: Settings, email: str, erase: bool, client: subs.Client = CLI_CLIENT
) -> Removal:
    """Unsubscribe an address, or erase every record of it."""
    with session_scope(settings.database_url) as session:
        sub = _subscriber(session, email)
        if erase:
            privacy.erase_subscriber(session, settings, sub, reason="erased by the operator")
            return Removal(email, "erased")
        subs.unsubscribe(session, sub, client, via="operator")
        return Removal(sub.email, sub.status.value)


def unsuppress(settings: Settings, email: str) -> str:
    """Let an erased address be added again (the person asked you to); returns the address."""
    address, key = normalise_email(email)
    with session_scope(settings.database_url) as session:
        if not suppression.lift(session, key):
            raise OperatorError(f"{email} is not on the suppression list")
    return address


def export(settings: Settings, email: str | None) -> Any:
    """JSON-ready data: everything held about one subscriber, or every subscriber's row."""
    with session_scope(settings.database_url) as session:
        if email is None:
            rows = session.exec(select(Subscriber).order_by(col(Subscriber.id)))
            return [SubscriberPublic.model_validate(s).model_dump(mode="json") for s in rows]
        return privacy.export_subscriber(session, _subscriber(session, email))


def ingest(
    settings: Settings,
    *,
    path: Path | None = None,
    source: str | None = None,
    week: str | None = None,
    date: str | None = None,
    query: str | None = None,
) -> dict[str, Any]:
    """Fetch from a source and upsert the papers; bad items are reported, not fatal.

    Returns {"added", "updated", "unchanged", "errors"}.
    """
    if path is not None and not Path(path).exists():
        raise OperatorError(f"no such file: {path}")
    try:
        fetched = load_source(settings, source=source, path=path, week=week, date=date, query=query)
    except (SourceError, ValueError) as exc:  # a failing source, or options of two sources
        raise OperatorError(str(exc)) from exc
    return asdict(store_fetched(settings, fetched))


def preview(
    settings: Settings, *, interests: str | None, email: str | None, limit: int | None = None
) -> dict[str, Any]:
    """Rank the store's current papers for some interests (or a subscriber), without sending.

    `limit` defaults to the subscriber's own digest size, or the default one for interests."""
    now = settings.local_now()
    with session_scope(settings.database_url) as session:
        sub = preview_reader(session, settings, email=email, interests=interests)
        sub.max_papers = limit or sub.max_papers
        renderer = preview_renderer(session, settings, sub.frequency if email else Frequency.weekly, now)
        sent = papers_sent_to(session, sub)
    ranked = renderer.rank(sub, sent)
    cards = renderer.items(sub, ranked)  # as the email shows them: "For you" first, their why lines
    rendered, by_id = renderer.render(sub, cards), {r.paper_id: r for r in ranked}
    items = [
        {
            "paper_id": card.paper.id,
            "title": card.paper.title,
            "score": round(by_id[card.paper.id].score, 4),
            "relevance": round(by_id[card.paper.id].relevance, 4),
            "trending": round(by_id[card.paper.id].trending, 4),
            "why": card.why,
            "for_you": card.for_you,
        }
        for card in cards
    ]
    return {"items": items, "html": rendered.html, "text": rendered.text, "subject": rendered.subject}


def due_count(settings: Settings, frequency: Frequency, period: str) -> int:
    """Confirmed readers of `frequency` whom this period's issue has not been planned for yet:
    what a send now would add (readers who already have it get nothing new)."""
    with session_scope(settings.database_url) as session:
        planned = (
            select(Delivery.id)
            .join(Issue, col(Issue.id) == Delivery.issue_id)
            .where(
                Delivery.subscriber_id == Subscriber.id, Issue.frequency == frequency, Issue.period == period
            )
        )
        return reader_count(session, frequency, ~planned.exists())


def send_now(
    settings: Settings,
    frequency: str,
    *,
    dry_run: bool = False,
    wait: bool = True,
    show_progress: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Plan this period's issue (the period in the schedule's zone, as beat's) and dispatch it;
    a second run in the period sends nothing new. `now` defaults to the current time."""
    try:
        freq = Frequency(frequency)
    except ValueError as exc:
        raise OperatorError("frequency must be weekly or daily") from exc
    now = settings.local_now(now)
    if dry_run:
        with session_scope(settings.database_url) as session:
            papers = len(candidate_papers(session, freq, now))
        period = period_of(freq, now)
        return {"period": period, "due": due_count(settings, freq, period), "papers": papers}
    workers = liveness.require_worker(settings) if settings.uses_broker and wait else []
    with session_scope(settings.database_url) as session:
        issue, planned = plan_issue(session, freq, now)
    issue_id = saved_id(issue)
    total = sum(counts(settings, issue_id).values())
    if settings.uses_broker:
        try:
            jobs.run(settings, dispatch_issue, issue_id)
        except jobs.BrokerUnreachable as exc:  # the plan is committed: say what happens to it
            raise OperatorError(
                f"{exc}. Issue {issue_id} is planned ({total} deliveries) and goes out once the broker "
                "is back: run this again then, or beat's sweep queues it"
            ) from exc
        if wait:
            _wait_with_progress(settings, issue_id, total, show_progress, workers)
    else:
        _run_with_progress(settings, issue_id, total, show_progress)
    return {
        "issue_id": issue_id,
        "period": issue.period,
        "planned": planned,
        "counts": counts(settings, issue_id),
        "paused": pause_of(settings, issue_id),
        "queued": settings.uses_broker and not wait,  # left to the workers, not waited for
        "workers": workers,
    }


def counts(settings: Settings, issue_id: int) -> dict[str, int]:
    """An issue's delivery rows by state."""
    return delivery_counts(get_engine(settings.database_url), issue_id)


def pause_of(settings: Settings, issue_id: int) -> str | None:
    """Why the issue is paused, or None if it is not."""
    with session_scope(settings.database_url) as session:
        issue = session.get(Issue, issue_id)
        return (issue.pause_reason or "paused") if issue is not None and issue.paused_at else None


def _open_work(counts: dict[str, int]) -> int:
    return counts["pending"] + counts["sending"] + counts["deferred"]


def _run_with_progress(settings: Settings, issue_id: int, total: int, show: bool) -> None:

    with Progress(disable=not show, transient=True) as bar:
        task = bar.add_task(
            "Sending", total=max(total, 1), completed=total - _open_work(counts(settings, issue_id))
        )
        dispatch_issue(settings, issue_id, progress=lambda r: bar.advance(task, r.get("claimed", 0)))


def _wait_with_progress(
    settings: Settings, issue_id: int, total: int, show: bool, workers: list[str], timeout: float = 3600
) -> None:
    """Follow the ledger while workers send; stop when nothing is left open (or deferred only).
    When nothing moves for `settings.send_stall_seconds` the workers are pinged again: none answering is an
    `OperatorError` (the rest stays queued for them)."""
    deadline, moved, last_open = time.monotonic() + timeout, time.monotonic(), -1
    with Progress(console=Console(stderr=True), disable=not show, transient=True) as bar:
        if show:  # a line even where the bar cannot draw (not a terminal)
            bar.console.print(f"Issue {issue_id}: {total} deliveries; waiting for {', '.join(workers)}")
        task, said = bar.add_task("Sending", total=max(total, 1)), time.monotonic()
        while time.monotonic() < deadline:
            now = counts(settings, issue_id)
            bar.update(task, completed=total - _open_work(now))
            if show and not bar.console.is_terminal and time.monotonic() - said > PROGRESS_LINE_SECONDS:
                bar.console.print(f"Issue {issue_id}: {total - _open_work(now)} of {total} done")
                said = time.monotonic()
            if now["pending"] + now["sending"] == 0 or (now["sending"] == 0 and pause_of(settings, issue_id)):
                return
            if _open_work(now) != last_open:
                moved, last_open = time.monotonic(), _open_work(now)
            elif time.monotonic() - moved > settings.send_stall_seconds:
                liveness.require_worker(settings, f"and issue {issue_id}'s remaining deliveries go out")
                moved = time.monotonic()
            time.sleep(min(5.0, max(0.5, total / POLL_ROWS_PER_SECOND)))


def issue_row(settings: Settings, issue: Issue) -> dict[str, Any]:
    return {
        "id": issue.id,
        "frequency": issue.frequency.value,
        "period": issue.period,
        "title": issue.title,
        "papers": len(issue.paper_ids),
        "created_at": issue.created_at.isoformat(),
        "counts": counts(settings, saved_id(issue)),
        "paused_at": issue.paused_at.isoformat() if issue.paused_at else None,
        "pause_reason": issue.pause_reason,
    }


def list_issues(settings: Settings) -> list[dict[str, Any]]:
    with session_scope(settings.database_url) as session:
        return [issue_row(settings, i) for i in session.exec(select(Issue).order_by(col(Issue.id).desc()))]


def show_issue(settings: Settings, issue_id: int) -> dict[str, Any]:
    with session_scope(settings.database_url) as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            raise NotFound(f"no issue with id {issue_id}")
        titles = {
            p.id: p.title for p in session.exec(select(Paper).where(col(Paper.id).in_(issue.paper_ids)))
        }
        return {
            **issue_row(settings, issue),
            "paper_titles": [titles[i] for i in issue.paper_ids if i in titles],
            "bounces": bounce_counts(session, issue_id),  # after the 250: hard, soft, policy, complaint
        }


def resume_issue(settings: Settings, issue_id: int) -> dict[str, Any]:
    """Clear a paused issue's pause, put back its refused rows and dispatch it again.

    Returns {"issue_id", "put_back", "counts"}; with a broker the counts are those at dispatch.
    """
    with session_scope(settings.database_url) as session:
        if session.get(Issue, issue_id) is None:
            raise NotFound(f"no issue with id {issue_id}")
    put_back = delivery.resume_issue(settings, issue_id)
    if put_back is None:
        raise OperatorError(f"issue {issue_id} is not paused; nothing to resume")
    return {"issue_id": issue_id, "put_back": put_back, "counts": counts(settings, issue_id)}


def stats(settings: Settings) -> dict[str, Any]:
    """Subscribers by status, and every issue with its delivery counts."""
    with session_scope(settings.database_url) as session:
        subscribers = subscriber_counts(session)
    return {"subscribers": subscribers, "issues": list_issues(settings)}
