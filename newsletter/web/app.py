"""The FastAPI application factory: settings, templates, error pages, size limits."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter.config import Settings, get_settings
from newsletter.ratelimit import make_limiter
from newsletter.templating import html_env
from newsletter.tokens import TokenError

MAX_BODY = 64 * 1024
log = logging.getLogger("newsletter.web")


def wants_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "")
    accept = request.headers.get("accept", "")
    return ctype.startswith("application/json") or (
        "application/json" in accept and "text/html" not in accept
    )


def render_page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    html = (
        html_env()
        .get_template(f"web/{name}")
        .render(base_url=settings.base_url.rstrip("/"), request_path=request.url.path, **context)
    )
    return HTMLResponse(html, status_code=status_code)


def error_response(request: Request, status_code: int, title: str, message: str, **context) -> Response:
    """The same error as a JSON object for API clients and as a page for people."""
    if wants_json(request):
        return JSONResponse({"error": title, "detail": message}, status_code=status_code)
    return render_page(
        request, "message.html", status_code=status_code, title=title, message=message, **context
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    from newsletter.logs import setup_logging

    setup_logging()
    app = FastAPI(
        title="Paper Digest",
        version="0.1.0",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.limiter = make_limiter(settings)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return error_response(
                request, 413, "Request too large", "That request is larger than this service accepts."
            )
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        titles = {404: "Page not found", 405: "Not allowed", 429: "Too many requests"}
        return error_response(
            request,
            exc.status_code,
            titles.get(exc.status_code, "Error"),
            str(exc.detail) if exc.detail else "",
        )

    @app.exception_handler(TokenError)
    async def bad_link(request: Request, exc: TokenError):
        from newsletter.web.routes import token_error

        return token_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        fields = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors()[:5])
        return error_response(
            request, 422, "Invalid request", f"Some fields are missing or invalid: {fields}."
        )

    from newsletter.web import pages, preferences, routes

    for module in (routes, preferences, pages):
        app.include_router(module.router)
    return app
