"""The FastAPI application factory: settings, routers, error pages, and the layers around them.

Only entry points import this module (`newsletter serve`, tests, benchmarks, the demo).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from newsletter.bounces.providers.replay import make_token_store
from newsletter.config import Settings, get_settings
from newsletter.logs import setup_logging
from newsletter.ratelimit import make_limiter
from newsletter.tokens import TokenError
from newsletter.web import admin_api, admin_pages, pages, preferences, provider_hooks, routes
from newsletter.web.auth import check_secrets
from newsletter.web.middleware import BodyLimit, JobsAfterResponse, RequestLog, SecurityHeaders
from newsletter.web.responses import error_response, token_error

HTTP_TITLES = {
    401: "Unauthorized",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    413: "Request too large",
    429: "Too many requests",
}


class WebApp(FastAPI):
    """FastAPI with our layers outside Starlette's own: its 500 answer gets the security headers
    and a log line like every other, and jobs run after whatever answer went out."""

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        return JobsAfterResponse(RequestLog(SecurityHeaders(inner, self.state.settings)))


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
    )
    app.state.settings = settings
    app.state.limiter = make_limiter(settings)
    app.state.webhook_tokens = make_token_store(settings)  # Mailgun's single-use tokens
    app.add_middleware(BodyLimit)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        response = error_response(
            request,
            exc.status_code,
            HTTP_TITLES.get(exc.status_code, "Error"),
            str(exc.detail) if exc.detail else "",
        )
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(TokenError)
    async def bad_link(request: Request, exc: TokenError):
        return token_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        fields = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors()[:5])
        return error_response(
            request, 422, "Invalid request", f"Some fields are missing or invalid: {fields}."
        )

    for module in (routes, preferences, pages, provider_hooks):
        app.include_router(module.router)
    admin_api.install(app)
    admin_pages.install(app)
    return app
