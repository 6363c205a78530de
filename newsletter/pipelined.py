"""One statement in flight on psycopg: send it now, collect its answer later.

The ledger's `SentRecorder` uses this to overlap the commit of a row's "sent" with rendering the
next message. Only the plumbing is here (libpq calls on an idle autocommit connection); the SQL
and what to do when it fails stay with the caller.
"""

from __future__ import annotations

import select
import time
from typing import Any

from psycopg import pq
from sqlalchemy.engine import Connection


def idle_pgconn(conn: Connection) -> Any:
    """libpq's connection under `conn`, if it is psycopg's, autocommit and idle; else None."""
    try:
        driver = conn.connection.driver_connection
        pgconn = driver.pgconn  # type: ignore[union-attr]
        if driver.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE:  # type: ignore[union-attr]
            return pgconn
    except Exception:  # noqa: BLE001 - not psycopg, or not usable: the caller's plain path
        pass
    return None


def send(conn: Connection, pgconn: Any, name: bytes, sql: bytes, params: list[bytes]) -> None:
    """Send one statement (`$1`… placeholders, text parameters) without waiting for its answer.

    It is prepared as `name` the first time on each database connection (one blocking round
    trip), so the server plans it once rather than on every call: for the ledger's statement
    that halves its time. `conn.info` lives as long as the database connection does.
    """
    prepared = conn.info.setdefault("prepared", set())
    if name not in prepared:
        result = pgconn.prepare(name, sql)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise RuntimeError(f"cannot prepare {name!r}: {result.error_message!r}")
        prepared.add(name)
    pgconn.send_query_prepared(name, params)
    while pgconn.flush():  # 1: not all of it left yet (non-blocking socket)
        select.select([], [pgconn.socket], [], 1.0)


def forget(conn: Connection, name: bytes) -> None:
    """Prepare `name` again next time (its last call failed: it may be gone from the server)."""
    conn.info.get("prepared", set()).discard(name)


def collect(pgconn: Any, timeout: float) -> list[list[bytes]] | None:
    """The rows (each column as text bytes) the statement in flight returned, or None if it did
    not succeed. Raises TimeoutError after `timeout` seconds without an answer."""
    deadline = time.monotonic() + timeout
    results = []
    while True:
        pgconn.consume_input()
        if pgconn.is_busy():
            if time.monotonic() > deadline:
                raise TimeoutError("no answer to the statement in flight")
            select.select([pgconn.socket], [], [], 1.0)
            continue
        res = pgconn.get_result()
        if res is None:
            break
        results.append(res)
    if [r.status for r in results] != [pq.ExecStatus.TUPLES_OK]:
        return None
    got = results[0]
    return [[got.get_value(row, col) for col in range(got.nfields)] for row in range(got.ntuples)]
