"""`newsletter serve`: the log level, then uvicorn.

Only the `serve` command imports this module (it brings in uvicorn and, through the package,
FastAPI).
"""

from __future__ import annotations

import uvicorn

from newsletter.config import Settings
from newsletter.logs import setup_logging


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run the web app under uvicorn, logging at NEWSLETTER_LOG_LEVEL: the app's events and one
    redacted line per request (uvicorn's own access log, which writes link tokens, is off)."""
    setup_logging(settings.log_level)
    uvicorn.run(
        "newsletter.web:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        access_log=False,
        log_level=settings.log_level.lower(),
    )
