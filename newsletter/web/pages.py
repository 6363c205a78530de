"""Pages around the digest: archive, view in browser, votes; the bounce webhook; metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, field_validator

from newsletter import feedback, liveness
from newsletter import subscriptions as subs
from newsletter.bounces.reports import bounce_counts_by_issue, no_bounces
from newsletter.cards import issue_papers, paper_view
from newsletter.config import Settings
from newsletter.digests import issue_title, reader_view
from newsletter.ledger import sent_papers
from newsletter.ledger.reports import archived_issues
from newsletter.models import MAX_ROW_ID, Issue, utcnow
from newsletter.stats import issue_counts, subscriber_counts
from newsletter.templating import html_env
from newsletter.tokens import Purpose, TokenError, TokenReason
from newsletter.web.auth import metrics_caller, webhook_caller
from newsletter.web.deps import (
    FormOrJson,
    FormOrJsonRoute,
    IssueId,
    SessionDep,
    SettingsDep,
    within_webhook_rate,
)
from newsletter.web.headers import view_policy
from newsletter.web.responses import error_response, render_page, wants_json

router = APIRouter(route_class=FormOrJsonRoute)
FEED_ISSUES = 50
ARCHIVE_PAGE = 200  # editions on a page of /archive; older ones are behind its "Older editions" link
BAD_CURSOR = "This is not a page of the archive: `before` must be the number of an edition."


class BounceEvent(BaseModel):
    """A bounce or complaint reported by the mail provider."""

    type: Literal["hard_bounce", "soft_bounce", "complaint"]
    email: str
    reason: str = ""

    @field_validator("reason", mode="before")
    @classmethod
    def _printable(cls, value: Any) -> str:
        # printable text only: PostgreSQL refuses NUL bytes (that would be a 500)
        return "".join(ch for ch in str("" if value is None else value)[:500] if ch.isprintable())


@router.get("/archive", response_class=HTMLResponse)
def archive(
    request: Request, session: SessionDep, settings: SettingsDep, before: str | None = None
) -> Response:
    """The editions, newest first, ARCHIVE_PAGE to a page; `?before=<issue id>` is the page of
    those older than that issue (a key, not an offset: a new edition shifts no page)."""
    cursor = issue_number(before) if before is not None else None
    if before is not None and cursor is None:
        return error_response(request, 422, "Invalid request", BAD_CURSOR)
    issues = archived_issues(session, limit=ARCHIVE_PAGE + 1, before=cursor)
    rows = [
        {"id": i.id, "title": issue_title(i, settings.brand_name), "papers": papers_label(i)}
        for i in issues[:ARCHIVE_PAGE]
    ]
    older = rows[-1]["id"] if len(issues) > ARCHIVE_PAGE else None  # one more row: a next page
    return render_page(request, "archive.html", issues=rows, older=older, paged=cursor is not None)


def papers_label(issue: Issue) -> str:
    count = len(issue.paper_ids)
    return f"{count} paper" if count == 1 else f"{count} papers"


@router.get("/archive.xml")
def archive_feed(session: SessionDep, settings: SettingsDep) -> Response:
    """The archive as an Atom feed: the last FEED_ISSUES issues, each linking to its page."""
    issues = archived_issues(session, limit=FEED_ISSUES)
    base = settings.base_url.rstrip("/")
    entries = [
        {
            "id": i.id,
            "title": issue_title(i, settings.brand_name),
            "papers": papers_label(i),
            "updated": rfc3339(i.planned_at or i.created_at),
        }
        for i in issues
    ]
    updated = max((rfc3339(i.planned_at or i.created_at) for i in issues), default=rfc3339(utcnow()))
    template = html_env(settings).get_template("web/archive.xml")
    xml = template.render(base_url=base, feed_url=f"{base}/archive.xml", issues=entries, updated=updated)
    return Response(xml, media_type="application/atom+xml; charset=utf-8")


def rfc3339(at: datetime) -> str:
    """An Atom date: RFC 3339 in UTC (a naive time from SQLite is UTC)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat(timespec="seconds")


@router.get("/archive/{issue_id}", response_class=HTMLResponse)
def archive_issue(request: Request, issue_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    """The non-personalised edition: the issue's papers in trending order. An id that no
    issue can have (0, abc) is a page that does not exist, like any other: 404."""
    number = issue_number(issue_id)
    issue = session.get(Issue, number) if number is not None else None
    if issue is None:
        return error_response(request, 404, "Page not found", "There is no such issue.")
    papers = [paper_view(p) for p in issue_papers(session, issue)]  # as planned, not as re-ingested
    return render_page(
        request, "archive_issue.html", title=issue_title(issue, settings.brand_name), papers=papers
    )


def issue_number(text: str) -> int | None:
    """The issue id a URL segment spells (1 to the INTEGER column's largest), else None."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ROW_ID else None


@router.get("/issues/{issue_id}/view/{token}", response_class=HTMLResponse)
def view_in_browser(issue_id: IssueId, token: str, session: SessionDep, settings: SettingsDep) -> Response:
    """One reader's digest as it was sent (or would be sent), shown as a page."""
    sub, extra = subs.subscriber_for_token(session, settings, Purpose.view, token)
    issue = session.get(Issue, issue_id)
    if issue is None or extra.get("i") != issue_id:  # the link names the issue it was sent with
        raise TokenError(TokenReason.forged)
    sent = sent_papers(session, issue_id, sub)
    html = reader_view(settings, issue_id, sub, sent)
    return HTMLResponse(html, headers={"Content-Security-Policy": view_policy(settings)})


@dataclass(frozen=True)
class VoteLink:
    vote: feedback.VoteRequest
    path: str  # the path the link came on: the page's button posts back to it


def _vote_link(request: Request, token: str, session: SessionDep, settings: SettingsDep) -> VoteLink:
    """The vote a link asks for; TokenError (a 400/410 page) if it is forged, expired or asks
    for something its token does not allow (`feedback.read_vote`). The paper and the direction
    come from the path only (a link sent before them has neither there)."""
    paper_id, direction = request.path_params.get("paper_id"), request.path_params.get("direction")
    vote = feedback.read_vote(session, settings, token, paper_id, direction)
    return VoteLink(vote, f"/vote/{token}" + (f"/{paper_id}/{direction}" if paper_id is not None else ""))


VoteLinkDep = Annotated[VoteLink, Depends(_vote_link)]


@router.get("/vote/{token}/{paper_id}/{direction}", response_class=HTMLResponse)
@router.get("/vote/{token}", response_class=HTMLResponse)  # links sent before the form above
def vote_page(request: Request, link: VoteLinkDep) -> Response:
    """Shows what the vote is about; only the button (a POST) records it, never a prefetch."""
    return render_page(request, "vote.html", vote=link.vote, path=link.path, done=False)


@router.post("/vote/{token}/{paper_id}/{direction}")
@router.post("/vote/{token}")
def vote(request: Request, link: VoteLinkDep, session: SessionDep, settings: SettingsDep) -> Response:
    outcome = feedback.record_vote(session, settings, link.vote)
    if wants_json(request):
        return JSONResponse({"status": outcome})
    grace = -(-settings.vote_grace_seconds // 60)  # minutes, rounded up
    return render_page(
        request, "vote.html", vote=link.vote, path=link.path, done=True, outcome=outcome, grace_minutes=grace
    )


@router.post("/webhooks/bounce", dependencies=[Depends(within_webhook_rate), Depends(webhook_caller)])
def bounce_webhook(
    event: Annotated[BounceEvent, Depends(FormOrJson(BounceEvent))],
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Bounces and complaints from the mail provider, with the header
    `Authorization: Bearer <NEWSLETTER_WEBHOOK_SECRET>`, or signed: `X-Timestamp: <unix time>`
    and `X-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + body under that secret>`."""
    try:
        changed = feedback.apply_bounce_event(session, settings, event.type, event.email, event.reason)
    except subs.InvalidInput as exc:
        return JSONResponse({"error": "invalid email", "detail": str(exc)}, status_code=422)
    return JSONResponse({"status": "ok", "changed": changed})


@router.get("/metrics", dependencies=[Depends(metrics_caller)])
def metrics(session: SessionDep, settings: SettingsDep) -> Response:
    """Prometheus text: subscribers by status, deliveries by issue and state, bounces and
    complaints by issue and kind, the age of the newest worker and beat heartbeat, for a caller with
    `Authorization: Bearer <NEWSLETTER_METRICS_TOKEN or one of NEWSLETTER_ADMIN_TOKENS>`."""
    lines = ["# TYPE newsletter_subscribers gauge"]
    lines += [f'newsletter_subscribers{{status="{k}"}} {v}' for k, v in subscriber_counts(session).items()]
    lines.append("# TYPE newsletter_deliveries gauge")
    issues = issue_counts(session)
    for issue in issues:
        lines += [
            f'newsletter_deliveries{{issue="{issue.id}",period="{issue.period}",state="{k}"}} {v}'
            for k, v in issue.counts.items()
        ]
    lines.append("# TYPE newsletter_bounces gauge")  # after the relay's 250: DSNs, ARF, provider events
    bounced = bounce_counts_by_issue(session)
    for issue in issues:
        lines += [
            f'newsletter_bounces{{issue="{issue.id}",period="{issue.period}",kind="{k}"}} {v}'
            for k, v in (bounced.get(issue.id) or no_bounces()).items()
        ]
    lines += heartbeat_lines(settings)
    return PlainTextResponse("\n".join(lines) + "\n")


def heartbeat_lines(settings: Settings) -> list[str]:
    """Seconds since the newest worker and beat heartbeat; none recorded (or no Redis): no sample."""
    try:
        ages = liveness.heartbeat_ages(settings) if settings.uses_broker else None
    except redis.RedisError:
        ages = None  # /readyz says why; metrics still answer
    lines = ["# TYPE newsletter_heartbeat_age_seconds gauge"]
    for process, prefix in (("worker", "worker:"), ("beat", "beat")):
        age = liveness.newest(ages or {}, prefix)
        if age is not None:
            lines.append(f'newsletter_heartbeat_age_seconds{{process="{process}"}} {age:.1f}')
    return lines
