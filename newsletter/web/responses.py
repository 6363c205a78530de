"""How the web app answers: a page for people, the same thing as JSON for API clients."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from newsletter.config import Settings
from newsletter.templating import html_env
from newsletter.tokens import TokenError, TokenReason
from newsletter.web.headers import admin_policy, page_policy

TOKEN_PAGES: dict[TokenReason, tuple[int, str, str]] = {
    TokenReason.forged: (
        400,
        "This link is not valid",
        "The link may have been cut short or changed. Copy the whole link from the email, "
        "or sign up again to get a new one.",
    ),
    TokenReason.expired: (
        410,
        "This link has expired",
        "For your safety, links stop working after a while. Sign up again with the same "
        "address and we will send you a fresh one.",
    ),
    TokenReason.used: (
        410,
        "This link has already been used",
        "It may have been used already, or replaced by a newer one. If your subscription is "
        "active, use the preferences link in your latest email; otherwise sign up again.",
    ),
    TokenReason.gone: (
        410,
        "This subscription no longer exists",
        "We hold no data for it any more. You can sign up again at any time.",
    ),
    TokenReason.inactive: (
        410,
        "This subscription is not active",
        "You unsubscribed, or mail to your address could not be delivered, so your votes no "
        "longer shape a digest. Sign up again to receive digests and vote on them.",
    ),
}


def is_json_type(header: str) -> bool:
    """Whether a Content-Type (or one Accept entry) names JSON: `application/json` or a
    `+json` type (RFC 6839, as FastAPI's own body parsing reads them), compared without its
    `;` parameters and case-insensitively (RFC 9110 §8.3.1)."""
    media = header.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def sends_json(request: Request) -> bool:
    """Whether the request body is JSON (by its Content-Type)."""
    return is_json_type(request.headers.get("content-type", ""))


def wants_json(request: Request) -> bool:
    """JSON for API paths (and /metrics, read by scrapers) and for clients that send or ask for
    it; a page otherwise."""
    if request.url.path.startswith("/api/") or request.url.path == "/metrics":
        return True
    accept = request.headers.get("accept", "")
    accepted = [entry.split(";", 1)[0].strip().lower() for entry in accept.split(",")]
    return sends_json(request) or (any(map(is_json_type, accepted)) and "text/html" not in accepted)


def render_page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """`templates/web/<name>` with the Content-Security-Policy of our pages."""
    settings: Settings = request.app.state.settings
    html = (
        html_env(settings)
        .get_template(f"web/{name}")
        .render(base_url=settings.base_url.rstrip("/"), request_path=request.url.path, **context)
    )
    policy = {"Content-Security-Policy": page_policy(settings)}
    return HTMLResponse(html, status_code=status_code, headers=policy)


def error_response(request: Request, status_code: int, title: str, message: str, **context: Any) -> Response:
    """The same error as a JSON object for API clients and as a page for people: under /admin
    the admin's own (an unknown admin address answered the public page, "start from the signup
    page" and all)."""
    if wants_json(request):
        return JSONResponse({"error": title, "detail": message}, status_code=status_code)
    path = request.url.path
    if path != "/admin" and not path.startswith("/admin/"):
        return render_page(
            request, "message.html", status_code=status_code, title=title, message=message, **context
        )
    if status_code == 404 and context.pop("show_signup", False):  # a path no route takes, not a row
        message = "There is no admin page at this address."
    context = {"logged_in": False, "notice": None, "show_signup": False} | context
    page = render_page(
        request, "admin/message.html", status_code=status_code, title=title, message=message, **context
    )
    page.headers["Content-Security-Policy"] = admin_policy(request.app.state.settings)
    return page


def token_error(request: Request, exc: TokenError) -> Response:
    status, title, message = TOKEN_PAGES[exc.reason]
    return error_response(request, status, title, message, show_signup=True)
