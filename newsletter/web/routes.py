"""Signup, confirmation, unsubscribe, health: parse the request, call the core, render the answer.

No GET changes state.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlmodel import Session

from newsletter import links, onboarding
from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import LEFT, Subscriber
from newsletter.readiness import check_readiness
from newsletter.tokens import Purpose
from newsletter.web import proof
from newsletter.web.auth import from_this_site
from newsletter.web.deps import (
    ClientDep,
    FormOrJson,
    FormOrJsonRoute,
    SessionDep,
    SettingsDep,
    subscriber_for,
    subscriber_unless_erased,
    within_signup_rate,
)
from newsletter.web.responses import error_response, render_page, wants_json

router = APIRouter(route_class=FormOrJsonRoute)

SIGNUP_ACK = (
    "Thanks! If this address can receive Paper Digest, a confirmation link is on its "
    "way. Open it to start your subscription; nothing is sent until you confirm."
)


PROOF_NEEDED = (
    "Your browser could not finish the page's automatic check in time (it needs JavaScript). "
    "Please press the button again."
)


class Signup(BaseModel):
    """A signup: an address and, optionally, the reader's interests in their own words.

    `website` is a honeypot the form hides from people; `proof` is the solved challenge of
    GET /subscribe/challenge (`salt:number:signature`), needed when NEWSLETTER_SIGNUP_POW_DIFFICULTY
    is above 0. `timezone` is the browser's IANA zone (the form's script fills it); one the
    zoneinfo database does not know is ignored, not refused: the reader cannot see or fix a
    hidden field, so the signup goes on with the list's zone and the preferences page can
    change it."""

    email: str
    interests: str | None = ""
    website: str | None = ""
    proof: str | None = ""
    liked: list[int] = Field(default_factory=list, max_length=100)  # "papers like these" ticked
    timezone: str | None = ""


SignupBody = Annotated[Signup, Depends(FormOrJson(Signup))]
UnsubscribeReader = Annotated[Subscriber, Depends(subscriber_for(Purpose.unsubscribe))]


def form_challenge(settings: Settings) -> proof.Challenge | None:
    """The proof-of-work challenge a signup form carries, when the setting asks for one."""
    difficulty = settings.signup_pow_difficulty
    return proof.issue_challenge(settings.secret_key, difficulty) if difficulty else None


def proof_accepted(request: Request, settings: Settings, given: str | None) -> bool:
    """Whether the signup solved a challenge of ours that had not been used yet (or none is asked)."""
    if not settings.signup_pow_difficulty:
        return True
    salt = proof.verified_salt(settings.secret_key, given or "")
    return salt is not None and request.app.state.limiter.allow(f"proof:{salt}", 1, proof.LIFETIME_SECONDS)


@router.get("/", response_class=HTMLResponse)
def signup_page(request: Request, settings: SettingsDep, session: SessionDep) -> Response:
    wording = subs.CONSENT_WORDING.split(": ", 1)[1]
    return render_page(
        request,
        "signup.html",
        wording=wording,
        challenge=form_challenge(settings),
        picks=onboarding.picker_papers(session),
    )


@router.get("/subscribe/challenge")
def signup_challenge(settings: SettingsDep) -> JSONResponse:
    """A proof-of-work challenge for an API client: find `number` in 0..`maxnumber` whose
    SHA-256 of `salt + number` (hex) is `challenge`, and send `proof: salt:number:signature`."""
    challenge = proof.issue_challenge(settings.secret_key, settings.signup_pow_difficulty)
    return JSONResponse({**challenge.as_dict(), "required": settings.signup_pow_difficulty > 0})


@router.post("/subscribe", dependencies=[Depends(from_this_site), Depends(within_signup_rate)])
def subscribe(
    request: Request, body: SignupBody, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> Response:
    if body.website:  # only a robot fills the hidden field: the usual answer, nothing done
        return signup_accepted(request)
    if not proof_accepted(request, settings, body.proof):
        return signup_refused(request, session, settings, body, "Please try again", PROOF_NEEDED)
    likes = onboarding.checked_picks(session, body.liked)
    try:
        subs.request_subscription(session, settings, body.email, body.interests, client, body.timezone, likes)
    except subs.InvalidInput as exc:
        title = "Please shorten your interests" if exc.field == "interests" else "Please check your address"
        return signup_refused(request, session, settings, body, title, str(exc))
    return signup_accepted(request)


@router.get("/subscribe", include_in_schema=False)
def subscribe_again(settings: SettingsDep) -> Response:
    """A reload after a refused signup (the browser is left on /subscribe): the signup page."""
    return RedirectResponse(f"{settings.base_url.rstrip('/')}/", status_code=303)


def signup_refused(
    request: Request, session: Session, settings: Settings, body: Signup, title: str, message: str
) -> Response:
    """A 400 with the form again: what was typed, and a fresh challenge if one is asked for."""
    return error_response(
        request,
        400,
        title,
        message,
        email=body.email if len(body.email) < 300 else "",
        interests=body.interests or "",
        challenge=form_challenge(settings),
        picks=onboarding.picker_papers(session),
        ticked=set(body.liked),
    )


def signup_accepted(request: Request) -> Response:
    """The one answer to every signup that was not refused, whatever the address's state."""
    if wants_json(request):
        return JSONResponse({"status": "ok", "message": SIGNUP_ACK}, status_code=202)
    return render_page(request, "message.html", status_code=202, title="Check your inbox", message=SIGNUP_ACK)


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(request: Request, token: str, session: SessionDep, settings: SettingsDep) -> Response:
    """What confirming will do: the address, and the interests and number of ticked papers the
    signup being confirmed asked for (the latest signup's, whoever sent it), so the owner sees
    what the button applies. Nothing else about the subscriber is shown."""
    sub = subs.pending_subscriber(session, settings, token)
    interests = sub.interests if sub.pending_interests is None else sub.pending_interests
    picks = len(sub.pending_likes or [])
    return render_page(
        request, "confirm.html", email=sub.email, token=token, interests=interests, picks=picks
    )


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
    done = sub.status in LEFT
    return render_page(request, "unsubscribe.html", email=sub.email, token=token, done=done)


async def _one_click(request: Request) -> bool:
    """Whether the body is RFC 8058's `List-Unsubscribe=One-Click` (a mail client's POST), for
    the consent record. Any body, even a malformed one, still unsubscribes: a Form parameter
    answered 400 to a multipart body without a boundary, and the reader stayed subscribed."""
    try:
        async with request.form() as form:
            return form.get("List-Unsubscribe") == "One-Click"
    except Exception:  # noqa: BLE001 - a body we cannot read is simply not a one-click one
        return False


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request,
    token: str,
    session: SessionDep,
    client: ClientDep,
    sub: Annotated[Subscriber | None, Depends(subscriber_unless_erased(Purpose.unsubscribe))],
    one_click: Annotated[bool, Depends(_one_click)],
) -> Response:
    """Unsubscribe by button or RFC 8058 one-click POST: 200, no redirect, no cookies needed.
    The consent record says which: a mail client's POST carries `List-Unsubscribe=One-Click`."""
    if sub is None:  # erased: there is nothing left to unsubscribe
        if wants_json(request):
            return JSONResponse({"status": "unsubscribed"})
        return PlainTextResponse("Unsubscribed.\n")
    subs.unsubscribe(session, sub, client, via="one-click" if one_click else "page")
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


@router.get("/readyz")
def readyz(settings: SettingsDep) -> Response:
    """Readiness: database, migrations, broker, a worker's and beat's heartbeat. 200 with every
    check when all pass, else 503 (the failing checks say why); no URLs or secrets."""
    report = check_readiness(settings)
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)
