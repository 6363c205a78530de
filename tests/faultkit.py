"""Helpers for the fault-injection tests: an SMTP server that misbehaves on cue and counts what it
accepted, a private Redis, a real `celery beat`, bulk subscribers and a throwaway PostgreSQL.

Only the boundaries are real parts (PostgreSQL, Redis, Celery processes, SMTP over TCP); nothing
inside the product is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import create_engine, insert, text

from newsletter import admin
from newsletter.papers import sample_feed_path
from newsletter.testing import PG_ADMIN, stop_process
from tests.conftest import ROOT, free_port

TOPICS = [
    "large language models and agents using tools",
    "medical image segmentation",
    "robot learning and reinforcement learning for control",
    "diffusion models for video",
    "graph neural networks",
    "speech recognition",
    "",
    "protein structure prediction",
]


# ---- SMTP -----------------------------------------------------------------------------------


class FaultySMTP:
    """An aiosmtpd handler that counts accepted messages per recipient and fails on cue.

    Faults (all counted, none timed, so the tests do not depend on speed):
    - `mail_421`: the next N MAIL FROM commands get "421 … closing" and the connection is cut;
    - `rcpt_451`: the next N RCPT TO commands get "451 … try again later";
    - `drop_data`: the next N DATA transfers are cut off before the server replies;
    - `data_delay`: every DATA is answered this many seconds late (a slow relay);
    - `replies[address]`: a fixed reply to RCPT for that address (e.g. "550 5.1.1 …");
    - `mail_reply` / `data_reply`: a fixed reply to every MAIL FROM / DATA while set (e.g. a
      relay refusing the sender or the content: "550 5.7.1 …", "554 5.7.1 …");
    - `cut_before_dot`: the messages with these ordinals (1 = the first DATA this server sees)
      are cut off after their body (the MIME closing boundary), before the final `.`: the
      connection is aborted, nothing is accepted.
    `pipelining` advertises ESMTP PIPELINING (RFC 2920) in EHLO; aiosmtpd does not by default,
    though it reads pipelined commands correctly either way.
    A message counts as received only once the server has answered 250 to its DATA.
    """

    def __init__(self, keep: bool = False, pipelining: bool = False) -> None:
        self.lock = threading.Lock()
        self.pipelining = pipelining
        self.cut_before_dot: set[int] = set()
        self.data_seen = 0  # DATA commands with recipients, for `cut_before_dot`
        self.ehlos = 0  # sessions greeted: connections, for tests of connection reuse
        self.received: Counter[str] = Counter()  # recipient -> messages accepted (250 to DATA)
        self.rcpt_attempts: Counter[str] = Counter()
        self.raw: list[tuple[list[str], bytes]] = []
        self.keep = keep
        self.replies: dict[str, str] = {}
        self.mail_421 = 0
        self.rcpt_451 = 0
        self.drop_data = 0
        self.data_delay = 0.0  # seconds before answering DATA: a slow relay
        self.mail_reply: str | None = None
        self.data_reply: str | None = None
        self.faults: Counter[str] = Counter()  # which faults fired, how often
        self.fault_times: list[float] = []

    def _fire(self, name: str) -> None:
        self.faults[name] += 1
        self.fault_times.append(time.monotonic())

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        with self.lock:
            self.ehlos += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    def take_cut(self) -> bool:
        """Whether to cut off the message now arriving (and count it)."""
        with self.lock:
            self.data_seen += 1
            if self.data_seen not in self.cut_before_dot:
                return False
            self._fire("cut")
            return True

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        with self.lock:
            if self.mail_421 > 0:
                self.mail_421 -= 1
                self._fire("421")
                server.transport.close()
                return "421 4.7.0 Too many connections, closing"
            if self.mail_reply:
                self._fire(self.mail_reply[:3])
                return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        with self.lock:
            self.rcpt_attempts[address] += 1
            reply = self.replies.get(address)
            if reply:
                self._fire(reply[:3])
                return reply
            if self.rcpt_451 > 0:
                self.rcpt_451 -= 1
                self._fire("451")
                return "451 4.3.0 Temporary local problem, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            if self.drop_data > 0:
                self.drop_data -= 1
                self._fire("drop")
                server.transport.abort()  # no reply: the client cannot know, so it must retry
                return "451 never seen"
            if self.data_reply:
                self._fire(self.data_reply[:3])
                return self.data_reply
            for rcpt in envelope.rcpt_tos:
                self.received[rcpt] += 1
            if self.keep:
                self.raw.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.received.values())

    def duplicates(self) -> dict[str, int]:
        with self.lock:
            return {a: n for a, n in self.received.items() if n > 1}


class _CuttingSMTP(SMTP):
    """aiosmtpd's session, able to cut a message off after its body and before its `.`."""

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        handler = self.event_handler
        if not (self.envelope and self.envelope.rcpt_tos and handler.take_cut()):
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:  # the body up to its MIME closing boundary ("--…--"), then nothing more
                line = await self._reader.readuntil(b"\r\n")
                if line == b".\r\n" or (line.startswith(b"--") and line.endswith(b"--\r\n")):
                    break
        self.transport.abort()


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _CuttingSMTP(self.handler, **self.SMTP_kwargs)


class SMTPServer:
    """A FaultySMTP on a fixed port that can be down (port closed) and brought up again."""

    def __init__(self, handler: FaultySMTP, port: int | None = None, **kwargs) -> None:
        self.handler = handler
        self.port = port or free_port()
        self.kwargs = kwargs
        self.controller: Controller | None = None

    def start(self) -> SMTPServer:
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self.port, **self.kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@contextmanager
def relay_world(configure, db_url: str, readers: int, **env: str) -> Iterator[tuple[FaultySMTP, list[str]]]:
    """For in-process sends: a FaultySMTP relay, the sample papers and `readers` confirmed weekly
    readers in `db_url`, and the settings (`configure`, plus `env`) pointing at them."""
    box = FaultySMTP()
    server = SMTPServer(box).start()
    try:
        settings = configure(
            NEWSLETTER_DATABASE_URL=db_url,
            NEWSLETTER_SMTP_HOST="127.0.0.1",
            NEWSLETTER_SMTP_PORT=str(server.port),
            **env,
        )
        admin.ingest(settings, path=sample_feed_path())
        yield box, add_confirmed(db_url, readers)
    finally:
        server.stop()


# ---- Redis of our own -----------------------------------------------------------------------


class PrivateRedis:
    """`redis-server` on a free port, no persistence: stopping it loses every queued message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/system-deps.sh installs it)"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), timeout=10, what="redis-server to start")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


# ---- processes ------------------------------------------------------------------------------


class Beat:
    """A real `celery -A workers beat` (or another app module) with its schedule file in tmp."""

    def __init__(self, env: dict[str, str], tmp: Path, app: str = "workers", name: str = "beat") -> None:
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the process writes to it until stopped
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                "beat",
                "--loglevel=INFO",
                "-s",
                str(tmp / f"{name}-schedule"),
                "--pidfile=",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        stop_process(self.proc, group=True)


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (the prefork pool of a Celery worker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def kill_group(proc: subprocess.Popen) -> None:
    """kill -9 a process started with start_new_session and everything it forked."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def publish(broker_url: str, task: str, *args) -> None:
    """Put a task on the broker, exactly as beat or `newsletter send` would."""
    from celery import Celery

    client = Celery("newsletter-test-client", broker=broker_url)
    try:
        client.send_task(task, args=list(args))
    finally:
        client.close()


# ---- data -----------------------------------------------------------------------------------


def add_confirmed(db_url: str, count: int, domain: str = "example.org", prefix: str = "reader") -> list[str]:
    """`count` confirmed weekly subscribers in one statement; returns their addresses."""
    from newsletter.models import Subscriber, SubscriberStatus, utcnow

    now = utcnow()
    addresses = [f"{prefix}{i:05d}@{domain}" for i in range(count)]
    rows = [
        {
            "email": a,
            "email_key": a,
            "interests": TOPICS[i % len(TOPICS)],
            "frequency": "weekly",
            "max_papers": 3,
            "status": SubscriberStatus.confirmed,
            "token_version": 0,
            "created_at": now,
            "updated_at": now,
            "confirmed_at": now,
            "profile": {},
        }
        for i, a in enumerate(addresses)
    ]
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(insert(Subscriber.__table__), rows)
    engine.dispose()
    return addresses


def ledger(db_url: str, issue_id: int) -> dict[str, int]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT state, count(*) FROM delivery WHERE issue_id = :i GROUP BY state"), {"i": issue_id}
        ).all()
    engine.dispose()
    return {str(s): n for s, n in rows}


def delivery_rows(db_url: str) -> dict[str, tuple[str, str, int | None, str | None]]:
    """address -> (subscriber status, delivery state, smtp code, error), one row per delivery."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT s.email, s.status, d.state, d.smtp_code, d.error FROM delivery d "
                "JOIN subscriber s ON s.id = d.subscriber_id"
            )
        ).all()
    engine.dispose()
    return {email: (str(status), str(state), code, error) for email, status, state, code, error in found}


def scalar(db_url: str, sql: str, **params):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        value = conn.execute(text(sql), params).scalar()
    engine.dispose()
    return value


def database_outage(db_url: str, seconds: float) -> int:
    """Make one test database unreachable for `seconds` without touching the shared server:
    refuse new connections (ALLOW_CONNECTIONS false binds superusers too) and terminate every
    open backend of that database, repeatedly; then allow connections again. Returns how many
    backends were terminated."""
    name = db_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    terminated = 0
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                terminated += conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                ).scalar()
                time.sleep(0.2)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    return terminated
