"""The app's layers around every request, as pure ASGI middleware: the security headers, and a
request's jobs run once its answer has gone out.

`app.WebApp` puts them outside Starlette's own error handling, so its 500 answer gets the
headers too.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter import jobs
from newsletter.config import Settings
from newsletter.web.headers import fixed_headers

# Outside production only: Swagger UI loads its script and styles from a CDN.
DOCS_PATHS = ("/api/docs", "/docs/oauth2-redirect")


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
