"""Structured logs: one JSON object per line, an event name and the ids it concerns."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in STANDARD})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def setup_logging(level: str = "INFO", *, keep_level: bool = False) -> None:
    """Send the newsletter's logs to stderr as JSON lines at `level` (`Settings.log_level` where
    settings are known). The handler is added once; a later call sets the level again unless
    `keep_level`, which `create_app` passes so that the command running the app decides."""
    logger = logging.getLogger("newsletter")
    configured = any(getattr(h, "_newsletter", False) for h in logger.handlers)
    if not configured:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler._newsletter = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    if not (configured and keep_level):
        logger.setLevel(level.upper())


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: `event(log, "digest.sent", issue_id=3, subscriber_id=9)`."""
    logger.log(level, name, extra=fields)
