"""The app's layers around every request, as pure ASGI middleware: the body cap, the security
headers, HEAD answered as GET, the request log, and a request's jobs run once its answer has
gone out.

`app.WebApp` puts the last four outside Starlette's own error handling, so its 500 answer gets
the headers and a log line too (and a HEAD gets it without a body); `BodyLimit` sits inside it,
where its 413 becomes an error page.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter import jobs
from newsletter.config import Settings
from newsletter.logs import event
from newsletter.values import digits_only
from newsletter.web.headers import fixed_headers
from newsletter.web.responses import error_response

log = logging.getLogger("newsletter.web")

MAX_BODY = 64 * 1024
# Paths that take a file: the cap for each (a 100,000-row CSV is about 10 MB).
LARGE_BODIES = {"/admin/import": 32 * 2**20, "/api/admin/subscribers/import": 32 * 2**20}
TOO_LARGE = "That request is larger than this service accepts."
# Outside production only: Swagger UI loads its script and styles from a CDN.
DOCS_PATHS = ("/api/docs", "/docs/oauth2-redirect")
# Route names and ids; every other path segment could be a link token and is never logged.
_LOGGABLE_SEGMENT = re.compile(r"[a-z0-9._-]{0,24}")


class BodyLimit:
    """Refuse request bodies over `max_body` bytes with 413, counted as they arrive.

    A Content-Length over the cap is answered at once. A body without one (chunked) is cut off
    where it crosses the cap, whichever route is reading it. An answer given before the body
    was read to its end (a 413, or a bad link refused first) closes the connection, so the
    server never takes in the rest: no request costs more than `max_body` bytes.
    """

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app, self.default_max = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        max_body = LARGE_BODIES.get(scope["path"], self.default_max)
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not digits_only(length) or int(length) > max_body):
            response = error_response(Request(scope), 413, "Request too large", TOO_LARGE)
            response.headers["Connection"] = "close"
            return await response(scope, receive, send)
        received, unread = 0, "transfer-encoding" in headers or (length or "0") != "0"

        async def counted() -> Message:
            nonlocal received, unread
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_body:
                raise HTTPException(413, TOO_LARGE)  # the app's handler makes it the error page
            unread = unread and message.get("more_body", False)
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and unread:
                MutableHeaders(scope=message)["Connection"] = "close"  # uvicorn then hangs up
            await send(message)

        await self.app(scope, counted, closing)


class SecurityHeaders:
    """`headers.fixed_headers` on every answer that has not set them itself, including
    Starlette's own 500 and the early 413."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.headers = fixed_headers(settings)
        self.without_policy = [h for h in self.headers if h[0] != "Content-Security-Policy"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = self.without_policy if scope["path"].startswith(DOCS_PATHS) else self.headers

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = MutableHeaders(scope=message)
                for name, value in headers:
                    present.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


class HeadAsGet:
    """Answer HEAD as the GET of the same URL would be answered, without the body (RFC 9110
    §9.3.2): the same status and headers, Content-Length included. No GET changes anything,
    so neither does a HEAD. The server's own scope keeps saying HEAD, so it sends no body either."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


def redact_path(path: str) -> str:
    """`path` with each segment that could be a token replaced by `<redacted>`: only short
    lower-case segments (route names, issue ids) are kept. The query string is never logged."""
    return "/".join(s if _LOGGABLE_SEGMENT.fullmatch(s) else "<redacted>" for s in path.split("/"))


class RequestLog:
    """One JSON line per request (`http.request`: method, redacted path, status, duration). It
    replaces uvicorn's access log, which writes link tokens and client addresses verbatim."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500  # 500 unless the app answers (uvicorn will)

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            event(
                log,
                "http.request",
                method=scope["method"],
                path=redact_path(scope["path"]),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )


class JobsAfterResponse:
    """Run the in-process jobs a request enqueued (`jobs.held`) once its answer has been sent.

    So an answer takes the same time whether or not it queued an email (a signup inside the
    cooldown is not faster than a new one), and a slow SMTP relay never holds a request up.
    The request's task waits for them, so a test client sees them done when it has its answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        with jobs.held() as work:
            try:
                await self.app(scope, receive, send)
            finally:
                if work:
                    await asyncio.wrap_future(jobs.run_later(work))
