"""Subscribers: search, one reader's record and history, unsubscribe, erase (after a confirmation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from newsletter import history, privacy
from newsletter import subscriptions as subs
from newsletter.dashboard import search_subscribers
from newsletter.models import MAX_ROW_ID, Subscriber, SubscriberStatus
from newsletter.web.admin_pages.session import PATH, Admin, AdminForm
from newsletter.web.admin_pages.views import back_to, page
from newsletter.web.deps import SessionDep, SettingsDep
from newsletter.web.responses import error_response

router = APIRouter(prefix=PATH, include_in_schema=False)

SubscriberId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
PAGE_SIZE = 50
ADMIN_CLIENT = subs.Client(user_agent="admin pages")  # recorded in the consent rows of these actions
STATUSES = [s.value for s in SubscriberStatus]


@router.get("/subscribers", response_class=HTMLResponse)
def subscriber_list(
    request: Request,
    admin: Admin,
    session: SessionDep,
    q: Annotated[str, Query(max_length=320)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    after: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> Response:
    if status and status not in STATUSES:
        return error_response(request, 400, "Unknown status", f"Use one of {', '.join(STATUSES)}.")
    found = search_subscribers(session, q, status or None, after_id=after, limit=PAGE_SIZE + 1)
    return page(
        request,
        "subscribers.html",
        admin,
        subscribers=found[:PAGE_SIZE],
        next_after=found[PAGE_SIZE - 1].id if len(found) > PAGE_SIZE else None,
        q=q,
        status=status,
        statuses=STATUSES,
    )


def _subscriber(request: Request, session: SessionDep, subscriber_id: int) -> Subscriber | Response:
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return error_response(
            request, 404, "Page not found", "There is no such subscriber (or it was erased)."
        )
    return sub


@router.get("/subscribers/{subscriber_id}", response_class=HTMLResponse)
def subscriber_detail(
    request: Request, subscriber_id: SubscriberId, admin: Admin, session: SessionDep, settings: SettingsDep
) -> Response:
    sub = _subscriber(request, session, subscriber_id)
    if isinstance(sub, Response):
        return sub
    found = history.subscriber_history(settings, sub.email)
    return page(request, "subscriber.html", admin, sub=sub, history=found)


@router.post("/subscribers/{subscriber_id}/unsubscribe")
def unsubscribe(request: Request, subscriber_id: SubscriberId, _: AdminForm, session: SessionDep) -> Response:
    sub = _subscriber(request, session, subscriber_id)
    if isinstance(sub, Response):
        return sub
    subs.unsubscribe(session, sub, ADMIN_CLIENT, via="operator")
    return back_to(request, f"/admin/subscribers/{subscriber_id}", "unsubscribed")


@router.get("/subscribers/{subscriber_id}/erase", response_class=HTMLResponse)
def erase_confirmation(
    request: Request, subscriber_id: SubscriberId, admin: Admin, session: SessionDep
) -> Response:
    """The confirmation step: what erasing means, and the one button that does it."""
    sub = _subscriber(request, session, subscriber_id)
    if isinstance(sub, Response):
        return sub
    return page(request, "erase.html", admin, sub=sub)


@router.post("/subscribers/{subscriber_id}/erase")
def erase(
    request: Request,
    subscriber_id: SubscriberId,
    post: AdminForm,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Erase for good, if the confirmation form's typed address matches (any case)."""
    sub = _subscriber(request, session, subscriber_id)
    if isinstance(sub, Response):
        return sub
    if post.text("confirm", 320).strip().casefold() != sub.email.casefold():
        error = "Type the subscriber's address exactly to confirm. Nothing was erased."
        return page(request, "erase.html", post.session, status_code=400, sub=sub, error=error)
    privacy.erase_subscriber(session, settings, sub, reason="erased by the operator")
    return back_to(request, "/admin/subscribers", "erased")
