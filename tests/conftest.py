"""Real parts at the boundaries: PostgreSQL, Redis, an SMTP server, Celery workers, uvicorn."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from newsletter.testing import create_pg_database, drop_pg_database, free_port, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
REDIS = os.environ.get("NEWSLETTER_TEST_REDIS", "redis://127.0.0.1:6379")
SECRET = "test-secret-0123456789abcdef-long-enough-for-production-mode-too"

BASE_ENV = {
    "NEWSLETTER_MODE": "test",
    "NEWSLETTER_SECRET_KEY": SECRET,
    "NEWSLETTER_BASE_URL": "https://news.example.org",
    "NEWSLETTER_MAIL_FROM": "Paper Digest <digest@news.example.org>",
    "NEWSLETTER_LIST_ID": "Paper Digest <digest.news.example.org>",
}

# What production wants besides a strong secret and an https base URL: a sender identity on a
# domain that can exist (the tests' example.org is reserved, so production refuses it) and a
# postal address. As Settings values, and as environment variables.
PRODUCTION_IDENTITY = {
    "mail_from": "Paper Digest <digest@papers.yourlab.org>",
    "list_id": "Paper Digest <digest.papers.yourlab.org>",
    "postal_address": "Example Labs, 1 Main St, Springfield",
}
PRODUCTION_ENV = {f"NEWSLETTER_{key.upper()}": value for key, value in PRODUCTION_IDENTITY.items()}


# ---- databases ------------------------------------------------------------------------------


@contextmanager
def migrated_pg() -> Iterator[str]:
    """A throwaway PostgreSQL database with the migrations applied, dropped afterwards."""
    from newsletter.db import _engines
    from newsletter.migrate import upgrade

    url = create_pg_database()
    try:
        upgrade(url)
        yield url
    finally:
        engine = _engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        drop_pg_database(url)


def migrated_sqlite(folder: Path) -> str:
    from newsletter.migrate import upgrade

    url = f"sqlite:///{folder / 'test.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, then a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path)
        return
    with migrated_pg() as url:
        yield url


def insert_confirmed_readers(pg_url: str, count: int, interests: str = "") -> None:
    """`count` confirmed weekly readers r1@example.org … in one INSERT … SELECT (PostgreSQL)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscriber (email, email_key, interests, frequency, max_papers, status,"
                " token_key, token_version, created_at, updated_at, profile)"
                " SELECT 'r' || i || '@example.org', 'r' || i || '@example.org', :interests, 'weekly', 5,"
                " 'confirmed', md5(i::text), 0, now(), now(), '{}' FROM generate_series(1, :count) i"
            ),
            {"interests": interests, "count": count},
        )
    engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with migrated_pg() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return migrated_sqlite(tmp_path)


# ---- settings -------------------------------------------------------------------------------


@pytest.fixture
def configure(monkeypatch, tmp_path):
    """Set NEWSLETTER_* variables for this test and return fresh Settings."""
    from newsletter.config import get_settings, reset_settings

    def apply(**overrides: str):
        env = {**BASE_ENV, "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"), **overrides}
        for key in list(os.environ):
            if key.startswith("NEWSLETTER_") and key not in env:
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        reset_settings()
        return get_settings()

    yield apply
    reset_settings()


# ---- the app --------------------------------------------------------------------------------


def app_routes(app) -> list:
    """Every route of the app, with included routers flattened (FastAPI keeps them nested)."""

    def walk(routes):
        for r in routes:
            if hasattr(r, "original_router"):
                yield from walk(r.original_router.routes)
            else:
                yield r

    return list(walk(app.routes))


# ---- SMTP -----------------------------------------------------------------------------------


class Mailbox:
    """What an in-process aiosmtpd server received, parsed."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.replies: dict[str, str] = {}  # address -> SMTP reply to RCPT, e.g. "550 no such user"
        self._cond = threading.Condition()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook
        with self._cond:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            self._cond.notify_all()
        return "250 OK"

    def parsed(self, to: str | None = None) -> list[email.message.EmailMessage]:
        with self._cond:
            raw = [(rcpts, data) for _, rcpts, data in self.messages]
        return [
            email.message_from_bytes(data, policy=email.policy.default)
            for rcpts, data in raw
            if to is None or to in rcpts
        ]

    def wait_for(
        self, count: int, to: str | None = None, timeout: float = 20.0, subject: str | None = None
    ) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = [m for m in self.parsed(to) if subject is None or subject in str(m["Subject"])]
            if len(msgs) >= count or time.monotonic() > deadline:
                return msgs
            time.sleep(0.05)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def text_part(msg: email.message.EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def html_part(msg: email.message.EmailMessage) -> str:
    return msg.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n")


def link_in(msg: email.message.EmailMessage, path: str) -> str:
    match = re.search(rf"https?://[^\s\"<>]+/{path}/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*", text_part(msg))
    assert match, f"no /{path}/ link in:\n{text_part(msg)}"
    return match.group(0)


# ---- processes ------------------------------------------------------------------------------


def process_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(BASE_ENV)
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    return env


class Worker:
    """A real `celery -A workers worker` process."""

    def __init__(
        self, env: dict[str, str], concurrency: int = 1, name: str | None = None, log_path: Path | None = None
    ) -> None:
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "worker",
                "-P",
                "prefork",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path and b"ready." in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise TimeoutError("worker did not become ready")

    def stop(self) -> None:
        stop_process(self.proc, timeout=15, group=True)


class WebServer:
    """A real uvicorn process serving the app."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()  # a given port lets NEWSLETTER_BASE_URL name this server
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "newsletter.web:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(
            self.url, alive=lambda: self.proc.poll() is None, describe=lambda: log_path.read_text()[-2000:]
        )

    def stop(self) -> None:
        stop_process(self.proc)


def posted_at_once(url: str, paths: list[str], **request: Any) -> list[httpx.Response]:
    """POST every path to the server at `url` at the same moment, one connection each (a double
    click, ten tabs, a mail client's one-click POST beside the reader's button); the answers in
    the order of `paths`. `request` is what each POST sends (data=, headers=)."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(paths))) as c:
            return await asyncio.gather(*(c.post(url + path, **request) for path in paths))

    return asyncio.run(burst())


def own_redis_db(use: int) -> str:
    """A Redis database for one `use` (0: the `redis_db` fixture, 1: the production rehearsal,
    2: the provider webhooks) of this pytest-xdist worker (gw0, gw1, …), so tests running in
    parallel never share, let alone flush, each other's broker. Database 0 is left alone."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return f"{REDIS}/{1 + (3 * worker + use) % 15}"


@pytest.fixture
def redis_db() -> Iterator[str]:
    """A Redis database of our own, flushed before and after."""
    import redis

    url = own_redis_db(0)
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture
def stack(pg_url, redis_db, smtp_server, tmp_path):
    """PostgreSQL + Redis + a Celery worker + uvicorn + SMTP, all configured alike."""
    box, port = smtp_server
    env = process_env(
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_BROKER_URL=redis_db,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_CONFIRM_COOLDOWN_MINUTES="10",
    )
    worker = Worker(env, concurrency=2, log_path=tmp_path / "worker.log")
    web = WebServer(env, tmp_path / "web.log")
    try:
        worker.wait_ready()
        yield type(
            "Stack",
            (),
            {
                "env": env,
                "mailbox": box,
                "web": web,
                "worker": worker,
                "db_url": pg_url,
                "broker": redis_db,
                "tmp": tmp_path,
            },
        )
    finally:
        web.stop()
        worker.stop()


def cli_with(configure, database_url: str):
    """`newsletter …` in-process on `database_url`: run(*args) checks exit 0 unless ok=False."""
    from typer.testing import CliRunner

    from newsletter.cli import app

    configure(NEWSLETTER_DATABASE_URL=database_url)
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, list(args))
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run
