"""The preferences page: interests, frequency, size, learned profile, export and erase."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from newsletter import links
from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.ranking import describe_profile
from newsletter.tokens import Purpose
from newsletter.web.deps import ClientDep, SessionDep, SettingsDep, read_fields, subscriber_for
from newsletter.web.responses import error_response, render_page, wants_json

router = APIRouter()
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
Reader = Annotated[Subscriber, Depends(subscriber_for(Purpose.preferences))]


def _page(
    request: Request, settings: Settings, sub: Subscriber, token: str, status_code: int = 200, **context: Any
) -> Response:
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
def preferences_page(request: Request, token: str, sub: Reader, settings: SettingsDep) -> Response:
    return _page(request, settings, sub, token)


@router.post("/preferences/{token}", openapi_extra=PREFS_BODY)
async def save_preferences(
    request: Request, token: str, sub: Reader, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> Response:
    fields = await read_fields(request)
    try:
        subs.update_preferences(
            session,
            sub,
            interests=fields.get("interests"),
            frequency=fields.get("frequency"),
            max_papers=fields.get("max_papers"),
            client=client,
        )
    except subs.InvalidInput as exc:
        session.rollback()
        return _page(request, settings, sub, token, status_code=400, error=str(exc))
    if wants_json(request):
        return JSONResponse({"status": "saved"})
    return _page(request, settings, sub, token, saved=True)


@router.get("/preferences/{token}/export")
def export_data(sub: Reader, session: SessionDep) -> Response:
    return JSONResponse(
        subs.export_subscriber(session, sub),
        headers={"Content-Disposition": 'attachment; filename="paper-digest-my-data.json"'},
    )


@router.post("/preferences/{token}/reset-profile")
def reset_profile(
    request: Request, token: str, sub: Reader, session: SessionDep, settings: SettingsDep
) -> Response:
    sub.profile = {}
    session.add(sub)
    return _page(request, settings, sub, token, reset=True)


@router.post("/preferences/{token}/erase")
async def erase(
    request: Request, token: str, sub: Reader, session: SessionDep, settings: SettingsDep
) -> Response:
    fields = await read_fields(request)
    if fields.get("confirm") != "yes":
        return _page(
            request,
            settings,
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
