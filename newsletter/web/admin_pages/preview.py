"""Preview: the digest for some interests (or a subscriber) as a reader would see it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from newsletter import admin as operator
from newsletter.config import Settings
from newsletter.errors import OperatorError
from newsletter.subscriptions import InvalidInput
from newsletter.web.admin_pages.session import PATH, Admin
from newsletter.web.admin_pages.views import page
from newsletter.web.deps import SettingsDep
from newsletter.web.headers import framed_view_policy
from newsletter.web.responses import error_response

router = APIRouter(prefix=PATH, include_in_schema=False)

Interests = Annotated[str, Query(max_length=2000)]
Email = Annotated[str, Query(max_length=320)]


def _preview(settings: Settings, interests: str, email: str) -> dict[str, Any]:
    """admin.preview for a subscriber's address if one is given, else for the interests."""
    return operator.preview(settings, interests=interests, email=email.strip() or None)


@router.get("/preview", response_class=HTMLResponse)
def preview_page(
    request: Request, admin: Admin, settings: SettingsDep, interests: Interests = "", email: Email = ""
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
                shown=None,
            )
    return page(request, "preview.html", admin, interests=interests, email=email, shown=shown, error=None)


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
