"""How the admin pages answer: a page with the admin policy, or a redirect after a POST."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from newsletter.config import Settings
from newsletter.templating import html_env
from newsletter.web.admin_pages.session import AdminSession
from newsletter.web.headers import admin_policy

# What a redirect after a POST may say (`?notice=<key>`): fixed texts, never the query's own.
NOTICES = {
    "unsubscribed": "The subscriber is unsubscribed. No further digests go to them.",
    "erased": "The subscriber is erased. Their address is kept only as a hash, so no import brings it back.",
    "paused": "The issue is paused: nothing more is sent until you resume it.",
    "resumed": "The issue is resumed and sending again.",
    "not_paused": "The issue was not paused; nothing to resume.",
    "already_paused": "The issue was already paused.",
    "logged_out": "You are logged out.",
    "test_sent": "The test digest is sent: the mail server took it.",
}


def page(
    request: Request, name: str, session: AdminSession | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """`templates/web/admin/<name>` with the admin pages' Content-Security-Policy."""
    settings: Settings = request.app.state.settings
    notice = NOTICES.get(request.query_params.get("notice", ""))
    html = (
        html_env(settings)
        .get_template(f"web/admin/{name}")
        .render(
            base_url=settings.base_url.rstrip("/"),
            request_path=request.url.path,
            csrf=session.csrf if session else "",
            logged_in=session is not None,
            notice=notice,
            **context,
        )
    )
    return HTMLResponse(
        html, status_code=status_code, headers={"Content-Security-Policy": admin_policy(settings)}
    )


def back_to(request: Request, path: str, notice: str | None = None) -> RedirectResponse:
    """303 to an admin page (a POST answered with a GET: reloading never repeats the action)."""
    del request  # the same site: a relative Location
    query = f"?notice={notice}" if notice else ""
    return RedirectResponse(f"{path}{query}", status_code=303)
