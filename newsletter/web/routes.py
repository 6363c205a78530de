"""Signup, confirmation, unsubscribe, health: parse the request, call the core, render the answer.

No GET changes state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from newsletter import links
from newsletter import subscriptions as subs
from newsletter.db import session_scope
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.tokens import Purpose, TokenError
from newsletter.web.deps import ClientDep, SessionDep, SettingsDep, read_fields, subscriber_for
from newsletter.web.responses import error_response, render_page, token_error, wants_json

router = APIRouter()

SIGNUP_ACK = (
    "Thanks! If this address can receive Paper Digest, a confirmation link is on its "
    "way. Open it to start your subscription; nothing is sent until you confirm."
)
FORM_BODY = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"email": {"type": "string"}, "interests": {"type": "string"}},
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"email": {"type": "string"}, "interests": {"type": "string"}},
                }
            },
        }
    }
}
UnsubscribeReader = Annotated[Subscriber, Depends(subscriber_for(Purpose.unsubscribe))]


@router.get("/", response_class=HTMLResponse)
def signup_page(request: Request) -> Response:
    return render_page(request, "signup.html", wording=subs.CONSENT_WORDING.split(": ", 1)[1])


@router.post("/subscribe", openapi_extra=FORM_BODY)
async def subscribe(
    request: Request, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> Response:
    # In the thread pool: a Redis round trip must not block the event loop (every request waits).
    if not await run_in_threadpool(
        request.app.state.limiter.allow, f"ip:{client.ip}", settings.signup_rate_per_ip, 60
    ):
        return error_response(
            request,
            429,
            "Too many requests",
            "Too many signups from your network just now. Please wait a minute.",
        )
    fields = await read_fields(request)
    email, interests = fields.get("email"), fields.get("interests", "")
    if not isinstance(email, str) or not isinstance(interests, (str, type(None))):
        return error_response(request, 422, "Invalid request", "Please enter an email address.")
    try:
        await run_in_threadpool(subs.request_subscription, session, settings, email, interests, client)
    except subs.InvalidInput as exc:
        return error_response(
            request,
            400,
            "Please check your address",
            str(exc),
            email=email if len(email) < 300 else "",
            interests=interests or "",
        )
    if wants_json(request):
        return JSONResponse({"status": "ok", "message": SIGNUP_ACK}, status_code=202)
    return render_page(request, "message.html", status_code=202, title="Check your inbox", message=SIGNUP_ACK)


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str, session: SessionDep, settings: SettingsDep) -> Response:
    sub, _ = subs.subscriber_for_token(session, settings, Purpose.confirm, token)
    if sub.status is not SubscriberStatus.pending:
        raise TokenError("used")
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
        if exc.reason == "gone":  # erased: there is nothing left to unsubscribe
            return PlainTextResponse("Unsubscribed.\n")
        return token_error(request, exc)
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
