"""The app's layers around every request, as pure ASGI middleware: the body cap, the security
headers, and a request's jobs run once its answer has gone out.

`app.WebApp` puts the last two outside Starlette's own error handling, so its 500 answer gets
the headers too; `BodyLimit` sits inside it, where its 413 becomes an error page.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter import jobs
from newsletter.config import Settings
from newsletter.web.headers import fixed_headers
from newsletter.web.responses import error_response

MAX_BODY = 64 * 1024
TOO_LARGE = "That request is larger than this service accepts."
# Outside production only: Swagger UI loads its script and styles from a CDN.
DOCS_PATHS = ("/api/docs", "/docs/oauth2-redirect")


class BodyLimit:
    """Refuse request bodies over `max_body` bytes with 413, counted as they arrive.

    A Content-Length over the cap is answered at once. A body without one (chunked) is cut off
    where it crosses the cap, whichever route is reading it. An answer given before the body
    was read to its end (a 413, or a bad link refused first) closes the connection, so the
    server never takes in the rest: no request costs more than `max_body` bytes.
    """

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            response = error_response(Request(scope), 413, "Request too large", TOO_LARGE)
            response.headers["Connection"] = "close"
            return await response(scope, receive, send)
        received, unread = 0, "transfer-encoding" in headers or (length or "0") != "0"

        async def counted() -> Message:
            nonlocal received, unread
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
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
