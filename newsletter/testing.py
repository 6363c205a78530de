"""Throwaway PostgreSQL databases and readiness checks, shared by the tests and the benchmarks."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def create_pg_database(prefix: str = "nl_test", admin_url: str = PG_ADMIN) -> str:
    """Create an empty database with a unique name; return its SQLAlchemy URL."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str, admin_url: str = PG_ADMIN) -> None:
    """Drop a database made by create_pg_database, closing whoever is still connected."""
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def wait_healthy(url: str, alive: Callable[[], bool], describe: Callable[[], str],
                 timeout: float = 30.0) -> None:
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
