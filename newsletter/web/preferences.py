"""The preferences page: interests, frequency, size, learned profile, export and erase."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from newsletter import links
from newsletter import subscriptions as subs
from newsletter.db import session_scope
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.ranking import describe_profile
from newsletter.tokens import Purpose
from newsletter.web.app import error_response, render_page, wants_json
from newsletter.web.routes import (
    PREFS_BODY,
    client_of,
    read_fields,
    settings_of,
)

router = APIRouter()


def _page(request: Request, sub: Subscriber, token: str, status_code: int = 200, **context) -> Response:
    settings = settings_of(request)
    return render_page(
        request,
        "preferences.html",
        status_code=status_code,
        sub=sub,
        unsubscribe_url=links.unsubscribe_url(settings, sub),
        token=token,
        active=sub.status is SubscriberStatus.confirmed,
        learned=describe_profile(sub.profile or None)[:12],
        liked=(sub.profile or {}).get("liked", []),
        **context,
    )


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(request: Request, token: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.preferences, token)
        return _page(request, sub, token)


@router.post("/preferences/{token}", openapi_extra=PREFS_BODY)
async def save_preferences(request: Request, token: str) -> Response:
    settings = settings_of(request)
    fields = await read_fields(request)
    with session_scope(settings.database_url) as session:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.preferences, token)
        try:
            subs.update_preferences(
                session,
                sub,
                interests=fields.get("interests"),
                frequency=fields.get("frequency"),
                max_papers=fields.get("max_papers"),
                client=client_of(request),
            )
        except subs.InvalidInput as exc:
            session.rollback()
            return _page(request, sub, token, status_code=400, error=str(exc))
        if wants_json(request):
            return JSONResponse({"status": "saved"})
        return _page(request, sub, token, saved=True)


@router.get("/preferences/{token}/export")
def export_data(request: Request, token: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.preferences, token)
        data = subs.export_subscriber(session, sub)
    return JSONResponse(
        data, headers={"Content-Disposition": 'attachment; filename="paper-digest-my-data.json"'}
    )


@router.post("/preferences/{token}/reset-profile")
def reset_profile(request: Request, token: str) -> Response:
    settings = settings_of(request)
    with session_scope(settings.database_url) as session:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.preferences, token)
        sub.profile = {}
        session.add(sub)
        return _page(request, sub, token, reset=True)


@router.post("/preferences/{token}/erase")
async def erase(request: Request, token: str) -> Response:
    settings = settings_of(request)
    fields = await read_fields(request)
    with session_scope(settings.database_url) as session:
        sub, _ = subs.subscriber_for_token(session, settings, Purpose.preferences, token)
        if fields.get("confirm") != "yes":
            return _page(
                request,
                sub,
                token,
                status_code=400,
                error="Tick the box to confirm that you want everything erased.",
            )
        subs.erase_subscriber(session, sub)
    return error_response(
        request,
        200,
        "Your data has been erased",
        "We no longer hold your address, your interests or your history. You can sign up again at any time.",
        show_signup=True,
    )
