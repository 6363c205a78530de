"""Logging in to the admin pages (the password or an admin token) and out."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.web.admin_pages import session as auth
from newsletter.web.admin_pages.views import back_to, page
from newsletter.web.deps import SessionDep, SettingsDep, within_rate

router = APIRouter(prefix=auth.PATH, include_in_schema=False)

LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")  # what secrets.token_urlsafe(24) makes
# One message for every failure: it never says whether a password or a token was near.
LOGIN_FAILED = "That did not work. Check the password or token and try again."

within_login_rate = within_rate(
    "admin-login",
    lambda settings: settings.admin_login_rate_per_ip,
    "Too many login attempts from your network just now. Please wait a minute.",
)


def _login_page(
    request: Request, settings: SettingsDep, status_code: int = 200, error: str | None = None
) -> Response:
    # The login cookie this browser holds already, if it has one: a new one on every page made
    # every other open login tab refuse the right password (403: "This form has expired"), and
    # when a session ends, every open admin tab lands on this page at once.
    held = request.cookies.get(auth.LOGIN_COOKIE, "")
    token = held if LOGIN_TOKEN.fullmatch(held) else secrets.token_urlsafe(24)
    response = page(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_csrf=token,
        next=auth.safe_next(request.query_params.get("next")),
        configured=auth.login_configured(settings),
        error=error,
    )
    response.set_cookie(
        auth.LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=auth.secure_cookies(settings),
        path=f"{auth.PATH}/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, settings: SettingsDep) -> Response:
    return _login_page(request, settings)


@router.post("/login", dependencies=[Depends(within_login_rate)])
def login(
    request: Request, settings: SettingsDep, fields: Annotated[dict[str, str], Depends(auth.login_form)]
) -> Response:
    found = auth.check_credential(settings, fields.get("secret", "")[:1000])
    if found is None:
        return _login_page(request, settings, status_code=401, error=LOGIN_FAILED)
    response = back_to(request, auth.safe_next(fields.get("next")))
    auth.start_session(response, settings, *found)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, settings: SettingsDep, post: auth.AdminForm) -> Response:
    response = back_to(request, f"{auth.PATH}/login", "logged_out")
    auth.end_session(response, session, settings, post.session.sid)
    return response
