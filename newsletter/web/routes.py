"""HTTP routes: parse the request, call the core, render the answer. No GET changes state."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from newsletter import links
from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import SubscriberStatus
from newsletter.tokens import Purpose, TokenError
from newsletter.web.app import error_response, render_page, wants_json

router = APIRouter()

SIGNUP_ACK = (
    "Thanks! If this address can receive Paper Digest, a confirmation link is on its "
    "way. Open it to start your subscription; nothing is sent until you confirm."
)
TOKEN_PAGES = {
    "forged": (
        400,
        "This link is not valid",
        "The link may have been cut short or changed. Copy the whole link from the email, "
        "or sign up again to get a new one.",
    ),
    "expired": (
        410,
        "This link has expired",
        "For your safety, links stop working after a while. Sign up again with the same "
        "address and we will send you a fresh one.",
    ),
    "used": (
        410,
        "This link has already been used",
        "It may have been used already, or replaced by a newer one. If your subscription is "
        "active, use the preferences link in your latest email; otherwise sign up again.",
    ),
    "gone": (
        410,
        "This subscription no longer exists",
        "We hold no data for it any more. You can sign up again at any time.",
    ),
}
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
PREFS_BODY = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "interests": {"type": "string"},
                        "frequency": {"type": "string"},
                        "max_papers": {"type": "string"},
                    },
                }
            }
        }
    }
}


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def client_of(request: Request) -> subs.Client:
    return subs.Client(
        ip=request.client.host if request.client else None, user_agent=request.headers.get("user-agent")
    )


async def read_fields(request: Request) -> dict[str, Any]:
    """Form fields or a JSON object; anything else is an empty dict (fields then fail validation)."""
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/json"):
            data = json.loads(await request.body() or b"{}")
            return data if isinstance(data, dict) else {}
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    except (ValueError, UnicodeDecodeError, AssertionError):
        return {}


def token_error(request: Request, exc: TokenError) -> Response:
    status, title, message = TOKEN_PAGES.get(exc.reason, TOKEN_PAGES["forged"])
    return error_response(request, status, title, message, show_signup=True)


@router.get("/", response_class=HTMLResponse)
def signup_page(request: Request) -> Response:
    return render_page(request, "signup.html", wording=subs.CONSENT_WORDING.split(": ", 1)[1])


@router.post("/subscribe", openapi_extra=FORM_BODY)
async def subscribe(request: Request) -> Response:
    settings = settings_of(request)
    client = client_of(request)
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

    def work() -> None:
        with session_scope(settings.database_url) as session:
            subs.request_subscription(session, settings, email, interests, client)

    try:
        await run_in_threadpool(work)
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
def confirm_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.confirm, token)
        if sub.status is not SubscriberStatus.pending:
            raise TokenError("used")
        return render_page(request, "confirm.html", email=sub.email, token=token)


@router.post("/confirm/{token}")
def confirm(request: Request, token: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        sub = subs.confirm_subscription(session, settings, token, client_of(request))
        prefs = links.preferences_url(settings, sub)
    if wants_json(request):
        return JSONResponse({"status": "confirmed", "preferences_url": prefs})
    return render_page(request, "confirmed.html", email=sub.email, preferences_url=prefs)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.unsubscribe, token)
        done = sub.status in (SubscriberStatus.unsubscribed, SubscriberStatus.bounced)
        return render_page(request, "unsubscribe.html", email=sub.email, token=token, done=done)


@router.post("/unsubscribe/{token}")
def unsubscribe(request: Request, token: str) -> Response:
    """Unsubscribe by button or RFC 8058 one-click POST: 200, no redirect, no cookies needed."""
    settings = settings_of(request)
    try:
        with session_scope(settings.database_url) as session:
            sub, _ = subs.subscriber_for_token(session, settings, Purpose.unsubscribe, token)
            subs.unsubscribe(session, sub, client_of(request), via="one-click")
            email = sub.email
    except TokenError as exc:
        if exc.reason == "gone":  # erased: there is nothing left to unsubscribe
            return PlainTextResponse("Unsubscribed.\n")
        return token_error(request, exc)
    if wants_json(request):
        return JSONResponse({"status": "unsubscribed"})
    return render_page(request, "unsubscribe.html", email=email, token=token, done=True)


@router.get("/healthz")
def healthz(request: Request) -> Response:
    try:
        with session_scope(settings_of(request).database_url) as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        return JSONResponse({"status": "error", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok"})
