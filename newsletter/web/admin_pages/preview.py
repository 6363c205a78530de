"""Preview: the digest for some interests (or a subscriber) as a reader would see it."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import admin as operator
from newsletter.config import Settings
from newsletter.errors import OperatorError
from newsletter.subscriptions import InvalidInput
from newsletter.testsend import send_test
from newsletter.web.admin_pages.session import PATH, Admin, AdminForm
from newsletter.web.admin_pages.views import page
from newsletter.web.deps import SettingsDep
from newsletter.web.headers import framed_view_policy
from newsletter.web.responses import error_response

router = APIRouter(prefix=PATH, include_in_schema=False)

Interests = Annotated[str, Query(max_length=2000)]
Email = Annotated[str, Query(max_length=320)]


def _reader(interests: str, email: str) -> tuple[str | None, str | None]:
    """A subscriber's address if one is given (their own interests then), else the interests."""
    return (email.strip(), None) if email.strip() else (None, interests)


def _preview(settings: Settings, interests: str, email: str) -> dict[str, Any]:
    address, text = _reader(interests, email)
    return operator.preview(settings, interests=text, email=address)


@router.get("/preview", response_class=HTMLResponse)
def preview_page(
    request: Request,
    admin: Admin,
    settings: SettingsDep,
    interests: Interests = "",
    email: Email = "",
    to: Email = "",
) -> Response:
    """The form; with interests or an address, the ranked papers and the digest in a frame."""
    shown = None
    if interests.strip() or email.strip():
        try:
            shown = _preview(settings, interests, email)
        except (OperatorError, InvalidInput) as exc:
            return page(
                request,
                "preview.html",
                admin,
                status_code=400,
                error=str(exc),
                interests=interests,
                email=email,
                to=to,
                shown=None,
            )
    context: dict[str, Any] = {"interests": interests, "email": email, "to": to, "shown": shown}
    return page(request, "preview.html", admin, error=None, **context)


@router.get("/preview/digest", response_class=HTMLResponse)
def preview_digest(
    request: Request, _: Admin, settings: SettingsDep, interests: Interests = "", email: Email = ""
) -> Response:
    """The digest's HTML for the preview's frame: sandboxed, framed by the admin pages only."""
    try:
        html = _preview(settings, interests, email)["html"]
    except (OperatorError, InvalidInput) as exc:
        return error_response(request, 400, "Cannot preview", str(exc))
    headers = {"Content-Security-Policy": framed_view_policy(settings), "X-Frame-Options": "SAMEORIGIN"}
    return HTMLResponse(html, headers=headers)


@router.post("/preview/test")
def test_send(
    request: Request,
    post: AdminForm,
    settings: SettingsDep,
) -> Response:
    """Send the previewed digest to `to` now, "[Test]" in the subject, no ledger row
    (`testsend.send_test`). One message, so it goes out in the request, as the CLI's does: the
    page can then say whether the relay took it."""
    to, interests, email = post.text("to", 320), post.text("interests"), post.text("email", 320)
    address, text = _reader(interests, email)
    try:
        send_test(settings, to, subscriber=address, interests=text)
    except (OperatorError, InvalidInput) as exc:
        shown = (
            None if not (interests.strip() or email.strip()) else _shown_or_none(settings, interests, email)
        )
        context: dict[str, Any] = {"interests": interests, "email": email, "shown": shown, "to": to}
        return page(
            request, "preview.html", post.session, status_code=400, error=f"Test not sent: {exc}", **context
        )
    query = urlencode({"interests": interests, "email": email, "to": to, "notice": "test_sent"})
    return RedirectResponse(f"{PATH}/preview?{query}", status_code=303)


def _shown_or_none(settings: Settings, interests: str, email: str) -> dict[str, Any] | None:
    try:
        return _preview(settings, interests, email)
    except (OperatorError, InvalidInput):
        return None
