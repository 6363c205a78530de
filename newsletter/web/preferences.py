"""The preferences page: interests, frequency, size, schedule, learned profile, export and erase."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from newsletter import feedback, links, onboarding, privacy
from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.ranking import describe_profile
from newsletter.ranking.index import liked_title
from newsletter.schedule import WEEKDAYS, zone_names
from newsletter.tokens import Purpose, TokenError, TokenReason
from newsletter.validation import WholeNumber, clean_weekday
from newsletter.web.deps import (
    ClientDep,
    FormOrJson,
    FormOrJsonRoute,
    SessionDep,
    SettingsDep,
    subscriber_for,
    subscriber_unless_erased,
)
from newsletter.web.responses import render_page, wants_json

router = APIRouter(route_class=FormOrJsonRoute)


class PreferencesForm(BaseModel):
    """The settings to change; those left out stay as they are. Values are checked by the core,
    whose message the page shows (a 400, not a 422)."""

    interests: str | None = None
    frequency: str | None = None
    max_papers: str | WholeNumber | None = None
    weekday: str | WholeNumber | None = None  # 0-6 or mon..sun; empty: the list's day
    timezone: str | None = None  # an IANA name; empty: the list's zone
    liked: list[int] = Field(default_factory=list, max_length=100)  # "papers like these" ticked


class EraseForm(BaseModel):
    """Erasing everything needs the confirmation box ticked (`confirm=yes`)."""

    confirm: str = ""


ERASE_UNCONFIRMED = "Tick the box to confirm that you want everything erased."
ERASED = "We no longer hold your address, your interests or your history. You can sign up again at any time."

Reader = Annotated[Subscriber, Depends(subscriber_for(Purpose.preferences))]


def _shown(sub: Subscriber, typed: PreferencesForm | None) -> dict[str, Any]:
    """The form's values: the reader's, or on a refusal what they typed (a field they left out
    shows the stored value). A refused form came back with the old values: every edit was lost."""
    shown: dict[str, Any] = {
        "interests": sub.interests,
        "frequency": sub.frequency.value,
        "max_papers": sub.max_papers,
        "weekday": sub.weekday,
        "timezone": sub.timezone,
    }
    if typed is None:
        return shown
    shown |= {
        k: v
        for k, v in typed.model_dump(include={"interests", "frequency", "max_papers"}).items()
        if v is not None
    }
    if typed.weekday is not None:
        with contextlib.suppress(subs.InvalidInput):
            shown["weekday"] = clean_weekday(typed.weekday)
    if typed.timezone is not None:
        shown["timezone"] = typed.timezone.strip() or None
    return shown


def _page(
    request: Request,
    session: Session,
    settings: Settings,
    sub: Subscriber,
    token: str,
    status_code: int = 200,
    typed: PreferencesForm | None = None,
    **context: Any,
) -> Response:
    liked, picks = (sub.profile or {}).get("liked", []), onboarding.picker_papers(session)
    return render_page(
        request,
        "preferences.html",
        status_code=status_code,
        sub=sub,
        form=_shown(sub, typed),
        unsubscribe_url=links.unsubscribe_url(settings, sub),
        token=token,
        active=sub.status is SubscriberStatus.confirmed,
        learned=describe_profile(sub.profile or None)[:12],
        liked=liked,
        picks=picks,
        # papers of the list the reader liked already (a vote, or a pick before): shown ticked
        already=[p.id for p in picks if liked_title(p.title) in liked],
        weekdays=WEEKDAYS,
        zones=zone_names(),
        list_weekday=WEEKDAYS[settings.digest_weekday],
        list_zone=settings.timezone,
        digest_hour=settings.digest_hour,
        **context,
    )


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(
    request: Request, token: str, sub: Reader, session: SessionDep, settings: SettingsDep
) -> Response:
    return _page(request, session, settings, sub, token)


@router.post("/preferences/{token}")
def save_preferences(
    request: Request,
    token: str,
    sub: Reader,
    body: Annotated[PreferencesForm, Depends(FormOrJson(PreferencesForm))],
    session: SessionDep,
    settings: SettingsDep,
    client: ClientDep,
) -> Response:
    try:
        subs.update_preferences(
            session,
            sub,
            interests=body.interests,
            frequency=body.frequency,
            max_papers=body.max_papers,
            schedule=(body.weekday, body.timezone),  # an omitted one stays as it is
            client=client,
        )
        if sub.status is SubscriberStatus.confirmed:  # what a reader ticks counts as votes, at once
            onboarding.like_papers(session, sub, onboarding.checked_picks(session, body.liked))
    except subs.InvalidInput as exc:
        session.rollback()
        return _refused(
            request, session, settings, sub, token, "Please check your preferences", str(exc), body
        )
    if wants_json(request):
        return JSONResponse({"status": "saved"})
    return _page(request, session, settings, sub, token, saved=True)


def _refused(
    request: Request,
    session: Session,
    settings: Settings,
    sub: Subscriber,
    token: str,
    title: str,
    message: str,
    typed: PreferencesForm | None = None,
) -> Response:
    """A 400: the page again with `message` and what was typed for people, `{"error",
    "detail"}` for API clients."""
    if wants_json(request):
        return JSONResponse({"error": title, "detail": message}, status_code=400)
    return _page(request, session, settings, sub, token, status_code=400, typed=typed, error=message)


@router.get("/preferences/{token}/export")
def export_data(sub: Reader, session: SessionDep) -> Response:
    return JSONResponse(
        privacy.export_subscriber(session, sub),
        headers={"Content-Disposition": 'attachment; filename="paper-digest-my-data.json"'},
    )


@router.post("/preferences/{token}/reset-profile")
def reset_profile(
    request: Request, token: str, sub: Reader, session: SessionDep, settings: SettingsDep
) -> Response:
    feedback.reset_profile(session, sub)
    if wants_json(request):
        return JSONResponse({"status": "reset"})
    return _page(request, session, settings, sub, token, reset=True)


@router.post("/preferences/{token}/erase")
def erase(
    request: Request,
    token: str,
    sub: Annotated[Subscriber | None, Depends(subscriber_unless_erased(Purpose.preferences))],
    body: Annotated[EraseForm, Depends(FormOrJson(EraseForm))],
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Erase everything, the box ticked. A form submitted twice (or again later) is answered as
    the first: the reader is erased, whichever press did it."""
    if body.confirm != "yes":
        if sub is None:
            raise TokenError(TokenReason.gone)
        return _refused(request, session, settings, sub, token, "Nothing was erased", ERASE_UNCONFIRMED)
    if sub is not None:
        privacy.erase_subscriber(session, settings, sub)
    if wants_json(request):
        return JSONResponse({"status": "erased", "message": ERASED})
    return render_page(
        request, "message.html", title="Your data has been erased", message=ERASED, show_signup=True
    )
