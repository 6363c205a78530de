"""Signup, confirmation, unsubscribe, health: parse the request, call the core, render the answer.

No GET changes state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from sqlalchemy import text

from newsletter import links
from newsletter import subscriptions as subs
from newsletter.db import session_scope
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.tokens import Purpose, TokenError, TokenReason
from newsletter.web.deps import (
    ClientDep,
    FormOrJson,
    FormOrJsonRoute,
    SessionDep,
    SettingsDep,
    subscriber_for,
    within_signup_rate,
)
from newsletter.web.responses import error_response, render_page, wants_json

router = APIRouter(route_class=FormOrJsonRoute)

SIGNUP_ACK = (
    "Thanks! If this address can receive Paper Digest, a confirmation link is on its "
    "way. Open it to start your subscription; nothing is sent until you confirm."
)


class Signup(BaseModel):
    """A signup: an address and, optionally, the reader's interests in their own words."""

    email: str
    interests: str | None = ""


SignupBody = Annotated[Signup, Depends(FormOrJson(Signup))]
UnsubscribeReader = Annotated[Subscriber, Depends(subscriber_for(Purpose.unsubscribe))]


@router.get("/", response_class=HTMLResponse)
def signup_page(request: Request) -> Response:
    return render_page(request, "signup.html", wording=subs.CONSENT_WORDING.split(": ", 1)[1])


@router.post("/subscribe", dependencies=[Depends(within_signup_rate)])
def subscribe(
    request: Request, body: SignupBody, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> Response:
    try:
        subs.request_subscription(session, settings, body.email, body.interests, client)
    except subs.InvalidInput as exc:
        return error_response(
            request,
            400,
            "Please check your address",
            str(exc),
            email=body.email if len(body.email) < 300 else "",
            interests=body.interests or "",
        )
    if wants_json(request):
        return JSONResponse({"status": "ok", "message": SIGNUP_ACK}, status_code=202)
    return render_page(request, "message.html", status_code=202, title="Check your inbox", message=SIGNUP_ACK)


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str, session: SessionDep, settings: SettingsDep) -> Response:
    sub = subs.pending_subscriber(session, settings, token)
    return render_page(request, "confirm.html", email=sub.email, token=token)


@router.post("/confirm/{token}")
def confirm(
    request: Request, token: str, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> Response:
    sub = subs.confirm_subscription(session, settings, token, client)
    prefs = links.preferences_url(settings, sub)
    if wants_json(request):
        return JSONResponse({"status": "confirmed", "preferences_url": prefs})
    return render_page(request, "confirmed.html", email=sub.email, preferences_url=prefs)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str, sub: UnsubscribeReader) -> Response:
    done = sub.status in (SubscriberStatus.unsubscribed, SubscriberStatus.bounced)
    return render_page(request, "unsubscribe.html", email=sub.email, token=token, done=done)


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request, token: str, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> Response:
    """Unsubscribe by button or RFC 8058 one-click POST: 200, no redirect, no cookies needed."""
    try:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.unsubscribe, token)
    except TokenError as exc:
        if exc.reason is TokenReason.gone:  # erased: there is nothing left to unsubscribe
            return PlainTextResponse("Unsubscribed.\n")
        raise
    subs.unsubscribe(session, sub, client, via="one-click")
    if wants_json(request):
        return JSONResponse({"status": "unsubscribed"})
    return render_page(request, "unsubscribe.html", email=sub.email, token=token, done=True)


@router.get("/healthz")
def healthz(settings: SettingsDep) -> Response:
    # Its own session, not SessionDep: a database that fails on connect or on commit is the answer.
    try:
        with session_scope(settings.database_url) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return JSONResponse({"status": "error", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok"})
