"""The FastAPI application factory: settings, routers, error pages, and the layers around them.

Only entry points import this module (`newsletter serve`, tests, benchmarks, the demo).
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp

from newsletter.bounces.providers.replay import make_token_store
from newsletter.config import Settings, get_settings
from newsletter.logs import setup_logging
from newsletter.ratelimit import make_limiter
from newsletter.tokens import TokenError
from newsletter.web import admin_api, admin_pages, pages, preferences, provider_hooks, routes
from newsletter.web.auth import AdminGate, check_secrets
from newsletter.web.middleware import BodyLimit, HeadAsGet, JobsAfterResponse, RequestLog, SecurityHeaders
from newsletter.web.responses import error_response, token_error

HTTP_TITLES = {
    401: "Unauthorized",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    413: "Request too large",
    429: "Too many requests",
    500: "Something went wrong",
}
# What a page says in place of Starlette's bare reason phrase ("Not Found").
HTTP_MESSAGES = {
    404: "There is no page at this address. Check that the link is complete, or start from the signup page.",
    405: "This address does not answer that kind of request.",
    500: "That failed on our side, not yours, and we have logged it. Please try again in a few minutes.",
}


class WebApp(FastAPI):
    """FastAPI with our layers outside Starlette's own: its 500 answer (`server_error`'s page)
    gets the security headers and a log line like every other, HEAD is answered (even that 500)
    as GET without the body, the admin API refuses a caller without a token before routing, and
    jobs run after whatever answer went out."""

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        gated = AdminGate(inner, self.state.settings)
        return JobsAfterResponse(RequestLog(HeadAsGet(SecurityHeaders(gated, self.state.settings))))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_secrets(settings)
    setup_logging(settings.log_level, keep_level=True)
    # The schema and its browser are for development; `app.openapi()` works in every mode.
    open_schema = settings.mode != "production"
    app = WebApp(
        title="Paper Digest",
        version="0.1.0",
        docs_url="/api/docs" if open_schema else None,
        redoc_url=None,
        openapi_url="/api/openapi.json" if open_schema else None,
        # Starlette builds this redirect from the Host header, which the client chooses;
        # `slash_redirect` builds it from NEWSLETTER_BASE_URL instead.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.limiter = make_limiter(settings)
    app.state.webhook_tokens = make_token_store(settings)  # Mailgun's single-use tokens
    app.add_middleware(BodyLimit)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404 and (redirect := slash_redirect(request)) is not None:
            return redirect
        detail = str(exc.detail or "")
        if detail == _phrase(exc.status_code):  # no message of ours: Starlette's default
            detail = HTTP_MESSAGES.get(exc.status_code, "")
        title = HTTP_TITLES.get(exc.status_code, "Error")
        response = error_response(request, exc.status_code, title, detail, show_signup=exc.status_code == 404)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["allow"] = ", ".join(allowed_methods(request))
        return response

    @app.exception_handler(Exception)
    async def server_error(request: Request, _exc: Exception):
        # Starlette's ServerErrorMiddleware calls this for any exception no handler took, then
        # raises it again: uvicorn still logs the traceback. No detail of the bug is shown.
        return error_response(request, 500, HTTP_TITLES[500], HTTP_MESSAGES[500])

    @app.exception_handler(TokenError)
    async def bad_link(request: Request, exc: TokenError):
        return token_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        fields = ", ".join(dict.fromkeys(_field_name(e.get("loc", ())) for e in exc.errors()[:5]))
        return error_response(
            request, 422, "Invalid request", f"Some fields are missing or invalid: {fields}."
        )

    for module in (routes, preferences, pages, provider_hooks):
        app.include_router(module.router)
    admin_api.install(app)
    admin_pages.install(app)
    return app


def slash_redirect(request: Request) -> Response | None:
    """For a path that only a trailing "/" keeps from a route (`/archive/`): a 307 to that route
    on NEWSLETTER_BASE_URL, query kept, as Starlette would but never on the request's Host."""
    path = request.url.path
    if path == "/" or not path.endswith("/"):
        return None
    scope = {**request.scope, "path": path.rstrip("/") or "/"}
    if all(route.matches(scope)[0] is Match.NONE for route in request.app.router.routes):
        return None
    query = f"?{request.url.query}" if request.url.query else ""
    base = request.app.state.settings.base_url.rstrip("/")
    return RedirectResponse(f"{base}{scope['path']}{query}", status_code=307)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path, for a 405's Allow (RFC 9110 15.5.6). Starlette
    named the first route's only: PUT /unsubscribe/… said "GET, HEAD", not POST."""
    methods: set[str] = set()
    for route in _all_routes(request.app.router.routes):
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:  # HeadAsGet answers it
        methods.add("HEAD")
    return sorted(methods)


def _all_routes(routes: list[Any]) -> Iterator[Any]:
    """The routes, those of included routers too (FastAPI keeps them inside `_IncludedRouter`s)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _all_routes(inner.routes) if inner is not None else (route,)


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return ""


def _field_name(loc: tuple[int | str, ...]) -> str:
    """The field an error is about: the first name after where it came from (body models are
    flat), not a list index (`("body", "liked", 0)` is `liked`) nor the member of a union that
    refused it (`("body", "max_papers", "int")` was named "int")."""
    names = [part for part in loc[1:] if isinstance(part, str)]
    return names[0] if names else str(loc[0]) if loc else "?"
