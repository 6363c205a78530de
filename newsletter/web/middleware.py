"""The app's layers around every request, as pure ASGI middleware: a request's jobs run once
its answer has gone out (`app.WebApp` puts it outside Starlette's own error handling).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter import jobs


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
