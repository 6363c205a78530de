"""Structured logs: one JSON object per line, an event name and the ids it concerns."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# uvicorn adds `color_message`, the same text with terminal escapes.
STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


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


def setup_process_logging(level: str) -> None:
    """Every log line of a long-running process (web, worker, beat, a migration) as JSON on
    stderr: the newsletter's own at `level`, every library's through the root logger (at `level`
    too; uvicorn and Celery log there), and Python's warnings."""
    setup_logging(level)
    root = logging.getLogger()
    root.handlers = [json_handler()]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # A logger that does not propagate and has no handler of its own (billiard's "multiprocessing",
    # whose "Process … exited with signal 15" comes when systemd stops the whole group) ends here.
    logging.lastResort = json_handler()
    logging.lastResort.setLevel(logging.WARNING)


def json_logger(name: str, level: str) -> None:
    """The library logger `name` (alembic, for one) as JSON lines on stderr at `level`, without
    touching the root logger (a command inside a longer-lived process, such as a test run)."""
    logger = logging.getLogger(name)
    logger.handlers = [json_handler()]
    logger.setLevel(level.upper())
    logger.propagate = False


def json_handler() -> logging.Handler:
    # The process's own stderr, even where a library swaps sys.stderr for a logging proxy
    # (Celery's redirected stdouts): writing there would log the line again.
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter())
    return handler


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's `log_config`: its loggers through one JSON handler on the root (each web
    worker process applies it again). Its access log stays off: the app logs requests itself,
    with link tokens redacted."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["json"], "level": level.upper()},
        "loggers": {
            name: {"level": level.upper()} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: `event(log, "digest.sent", issue_id=3, subscriber_id=9)`."""
    logger.log(level, name, extra=fields)
