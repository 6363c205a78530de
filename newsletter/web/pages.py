"""Pages around the digest: archive, view in browser, votes; the bounce webhook; metrics."""

from __future__ import annotations

import hmac
import json
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlmodel import select

from newsletter import feedback
from newsletter import subscriptions as subs
from newsletter.admin import stats
from newsletter.db import session_scope
from newsletter.digests import issue_title, paper_view, renderer_for
from newsletter.models import Delivery, DeliveryState, Issue, Paper
from newsletter.tokens import Purpose, TokenError
from newsletter.web.app import error_response, render_page
from newsletter.web.routes import client_of, settings_of

router = APIRouter()
# Ids are INTEGER columns: a larger number in the URL is a 422, not a database error (a 500).
IssueId = Annotated[int, Path(ge=1, le=2**31 - 1)]
WEBHOOK_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["type", "email"],
                    "properties": {
                        "type": {"type": "string", "enum": ["hard_bounce", "soft_bounce", "complaint"]},
                        "email": {"type": "string"},
                        "reason": {"type": "string"},
                    },
                }
            }
        }
    }
}


@router.get("/archive", response_class=HTMLResponse)
def archive(request: Request) -> Response:
    with session_scope(settings_of(request).database_url) as session:
        issues = session.exec(select(Issue).order_by(Issue.id.desc()).limit(200)).all()
        rows = [{"id": i.id, "title": i.title, "papers": len(i.paper_ids)} for i in issues]
    return render_page(request, "archive.html", issues=rows)


@router.get("/archive/{issue_id}", response_class=HTMLResponse)
def archive_issue(request: Request, issue_id: IssueId) -> Response:
    """The non-personalised edition: the issue's papers in trending order."""
    with session_scope(settings_of(request).database_url) as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            return error_response(request, 404, "Page not found", "There is no such issue.")
        found = {p.id: p for p in session.exec(select(Paper).where(Paper.id.in_(issue.paper_ids)))}
        papers = [paper_view(found[i]) for i in issue.paper_ids if i in found]
    return render_page(request, "archive_issue.html", title=issue_title(issue), papers=papers)


@router.get("/issues/{issue_id}/view/{token}", response_class=HTMLResponse)
def view_in_browser(request: Request, issue_id: IssueId, token: str) -> Response:
    """One reader's digest as it was sent (or would be sent), shown as a page."""
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        sub, extra = subs.subscriber_for_token(session, settings, Purpose.view, token)
        if extra.get("i") != issue_id or session.get(Issue, issue_id) is None:
            raise TokenError("forged")
        delivery = session.exec(
            select(Delivery).where(Delivery.issue_id == issue_id, Delivery.subscriber_id == sub.id)
        ).first()
        sent = delivery.paper_ids if delivery and delivery.state is DeliveryState.sent else None
    renderer = renderer_for(settings, issue_id)
    ranked = renderer.rank_ids(sub, sent) if sent else renderer.rank(sub)
    return HTMLResponse(renderer.render(sub, renderer.items(sub, ranked)).html)


@router.get("/vote/{token}", response_class=HTMLResponse)
def vote_page(request: Request, token: str) -> Response:
    """Shows what the vote is about; only the button (a POST) records it, never a prefetch."""
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        vote = feedback.read_vote(session, settings, token)
        return render_page(request, "vote.html", vote=vote, token=token, done=False)


@router.post("/vote/{token}")
def vote(request: Request, token: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        vote = feedback.read_vote(session, settings, token)
        recorded = feedback.record_vote(session, settings, vote, client_of(request))
    return render_page(request, "vote.html", vote=vote, token=token, done=True, recorded=recorded)


@router.post("/webhooks/bounce", openapi_extra=WEBHOOK_BODY)
async def bounce_webhook(request: Request) -> Response:
    """Bounces and complaints from the mail provider, authenticated by a shared secret.

    Body: {"type": "hard_bounce" | "soft_bounce" | "complaint", "email": "...", "reason": "..."}
    with the header `Authorization: Bearer <NEWSLETTER_WEBHOOK_SECRET>`.
    """
    secret = settings_of(request).webhook_secret
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    try:
        data = json.loads(await request.body())
        kind, address = data["type"], data["email"]
        # printable text only: PostgreSQL refuses NUL bytes (that would be a 500)
        reason = "".join(ch for ch in str(data.get("reason", ""))[:500] if ch.isprintable())
        if kind not in ("hard_bounce", "soft_bounce", "complaint") or not isinstance(address, str):
            raise ValueError(kind)
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "invalid body", "detail": WEBHOOK_BODY["requestBody"]}, status_code=422)
    settings = settings_of(request)
    try:
        with session_scope(settings.database_url) as session:
            changed = feedback.apply_bounce_event(session, kind, address, reason)
    except subs.InvalidInput as exc:
        return JSONResponse({"error": "invalid email", "detail": str(exc)}, status_code=422)
    return JSONResponse({"status": "ok", "changed": changed})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text: subscribers by status, deliveries by issue and state."""
    data = stats(settings_of(request))
    lines = ["# TYPE newsletter_subscribers gauge"]
    lines += [f'newsletter_subscribers{{status="{k}"}} {v}' for k, v in data["subscribers"].items()]
    lines.append("# TYPE newsletter_deliveries gauge")
    for issue in data["issues"]:
        lines += [
            f'newsletter_deliveries{{issue="{issue["id"]}",period="{issue["period"]}",state="{k}"}} {v}'
            for k, v in issue["counts"].items()
        ]
    return PlainTextResponse("\n".join(lines) + "\n")
