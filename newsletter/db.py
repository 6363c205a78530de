"""Engine, sessions, and the "enqueue after commit" buffer."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlmodel import Session, create_engine

_engines: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API objects
    cur = dbapi_conn.cursor()
    # WAL lets the web app read while a sender writes; busy_timeout waits instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def check_url(url: str) -> str:
    """`url`, if SQLAlchemy can read it and knows its dialect and driver; else ValueError saying
    why (a settings check: the message never holds the URL, which may hold a password)."""
    try:
        make_url(url).get_dialect()
    except (ArgumentError, ValueError) as exc:  # not a URL, an unknown dialect or driver, a bad port
        raise ValueError(
            f"{exc}; a database URL looks like sqlite:///./var/newsletter.db or "
            "postgresql+psycopg://user:password@host:5432/name"
        ) from None
    return url


def shown_url(url: str) -> str:
    """A database URL fit to print: the password, if any, as ***."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, *, create: bool = False) -> Engine:
    """A new engine for `url`; SQLite files get safe pragmas. Only with `create` (the migrations
    and the demo) is a missing SQLite file made, with its folder: anything else pointed at a path
    that holds no database says so at connect time, instead of leaving an empty file there."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path and create:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        if path and not create:
            event.listen(engine, "do_connect", lambda *_: _refuse_missing(path))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for an in-memory database or a `file:` URI."""
    name = make_url(url).database or ""
    return None if name in ("", ":memory:") or name.startswith("file:") else Path(name)


def _refuse_missing(path: Path) -> None:
    """Connecting to a SQLite file that does not exist is a mistake in the URL (or a database
    never made): an OperationalError naming the path, raised before sqlite3 creates it empty."""
    if not path.exists():
        raise sqlite3.OperationalError(
            f"no SQLite database at {path} "
            "(check NEWSLETTER_DATABASE_URL; `newsletter db upgrade` creates it)"
        )


def get_engine(url: str) -> Engine:
    """The process-wide engine for a database URL (one pool per URL per process)."""
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def dispose_engines() -> None:
    """Drop pooled connections; called after fork so children never share sockets."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _engines.clear())


def insert_ignore(table: Table, dialect: str):
    """An INSERT that skips rows hitting a unique constraint (SQLite and PostgreSQL alike)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing()


def upsert(table: Table, dialect: str, key: str, values: dict[str, Any]):
    """An INSERT of `values` that sets the other values on the row already holding `values[key]`
    (a unique column) instead, in one statement (SQLite and PostgreSQL alike)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    changed = {name: value for name, value in values.items() if name != key}
    return insert(table).values(**values).on_conflict_do_update(index_elements=[key], set_=changed)


def rows_written(session: Session, statement: Executable) -> int:
    """Run an INSERT, UPDATE or DELETE in the session; how many rows it wrote, as the driver
    counts them (-1 where it cannot tell)."""
    result = session.execute(statement, execution_options={"preserve_rowcount": True})
    return cast(CursorResult[Any], result).rowcount  # what a DML statement returns is a cursor result


def write_until_reachable(
    conn: Connection, write: Callable[[], None], seconds: float, on_retry: Callable[[], None]
) -> None:
    """Run `write` (statements on `conn` and their commit) until it succeeds, retrying with a
    growing pause for up to `seconds` while the database is unreachable: the connection
    reconnects after a rollback. For recording a 250, where giving up means a second email."""
    deadline = time.monotonic() + seconds
    delay = 0.2
    while True:
        try:
            write()
            return
        except DBAPIError:
            conn.rollback()
            if time.monotonic() > deadline:
                raise
            on_retry()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits once at the end (or rolls back), then runs after-commit hooks."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def after_commit(session: Session, fn: Callable[[], object]) -> None:
    """Run `fn` once the session's transaction commits; drop it if it rolls back.

    Tasks are published through this, so a worker never looks for a row that is not there yet.
    """
    session.info.setdefault("after_commit", []).append(fn)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    hooks = session.info.pop("after_commit", [])
    for fn in hooks:
        try:
            fn()
        except Exception:  # noqa: BLE001 - the data is committed; a hook must not undo the answer
            logging.getLogger("newsletter.db").exception("after_commit.failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)
