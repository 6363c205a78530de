"""Throwaway PostgreSQL databases, readiness checks and a look into the broker's queue, shared by
the tests and the benchmarks."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress

import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, text
from sqlmodel import Session

from newsletter.config import get_settings
from newsletter.db import session_scope

PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_pg_database(prefix: str = "nl_test", admin_url: str = PG_ADMIN) -> str:
    """Create an empty database with a unique name; return its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str, admin_url: str = PG_ADMIN) -> None:
    """Drop a database made by create_pg_database, closing whoever is still connected."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def wait_healthy(
    url: str, alive: Callable[[], bool], describe: Callable[[], str], timeout: float = 30.0
) -> None:
    """Poll `url` + /healthz until 200; fail early with `describe()` if `alive()` turns False."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if not alive():
            raise RuntimeError(f"server exited: {describe()}")
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become healthy")


def stop_process(proc, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM a process (its whole process group if `group`), SIGKILL it if it lingers."""

    def send(sig: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)

    if proc.poll() is not None:
        return
    send(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(5)


def dkim_test_key(path, pkcs8: bool = False) -> bytes:
    """Write a fresh RSA-2048 private key (PEM) to `path`; return its DKIM DNS TXT record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def configured_session() -> AbstractContextManager[Session]:
    """A session on the database the environment configures (tests and benchmarks set
    NEWSLETTER_DATABASE_URL, then read it here, at their edge)."""
    return session_scope(get_settings().database_url)


def queued_journey_emails(redis_url: str, db_url: str) -> Counter[tuple[str, int]]:
    """How many send_journey_email tasks wait in the broker's default queue for each
    (kind, subscriber id), read from the outbox rows they name."""
    email_ids = []
    for raw in redis.Redis.from_url(redis_url).lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"].get("task") == "newsletter.send_journey_email":
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            email_ids.append(args[0])
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, kind, subscriber_id FROM journey_email"))
        emails = {email_id: (kind, sub_id) for email_id, kind, sub_id in rows}
    engine.dispose()
    return Counter(emails[i] for i in email_ids)
