"""Many rows in a few statements: COPY on PostgreSQL (a 100,000-row import in seconds, where
multi-row INSERTs took a minute), executemany on SQLite. Each runs on the caller's connection,
inside its transaction."""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, text, update
from sqlalchemy.engine import Connection

from newsletter.db import insert_ignore

Row = dict[str, Any]
_names = itertools.count()


def _copy_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: list[Row]) -> None:
    """COPY `rows` into `table` (names here are ours, never input)."""
    # Only columns whose first value needs converting are converted (an enum, a JSON value):
    # every row of one import has the same types in the same columns.
    convert = {c for c in columns if _copy_value(rows[0][c]) is not rows[0][c]}
    cursor: Any = conn.connection.cursor()  # psycopg's own cursor: SQLAlchemy has no COPY
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([_copy_value(row[c]) if c in convert else row[c] for c in columns])


def _staged(conn: Connection, table: Table, columns: Sequence[str], rows: list[Row]) -> str:
    """A temporary table shaped like `columns` of `table`, filled with `rows` by COPY."""
    name = f"import_{table.name}_{next(_names)}"
    conn.execute(
        text(f"CREATE TEMP TABLE {name} AS SELECT {', '.join(columns)} FROM {table.name} WITH NO DATA")
    )
    _copy(conn, name, columns, rows)
    return name


def insert_rows(conn: Connection, table: Table, rows: list[Row]) -> None:
    """INSERT `rows` (all with the same keys)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy(conn, table.name, list(rows[0]), rows)
    else:
        conn.execute(table.insert(), rows)


def insert_new(conn: Connection, table: Table, rows: list[Row], key: str) -> dict[Any, int]:
    """INSERT `rows`, skipping those that hit a unique constraint; the id of each row written,
    by its `key` column."""
    if not rows:
        return {}
    if conn.dialect.name != "postgresql":
        statement = insert_ignore(table, conn.dialect.name).returning(table.c.id, table.c[key])
        return {k: i for i, k in conn.execute(statement, rows)}
    columns = list(rows[0])
    staged = _staged(conn, table, columns, rows)
    names = ", ".join(columns)
    written = conn.execute(
        text(
            f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {staged} "
            f"ON CONFLICT DO NOTHING RETURNING id, {key}"
        )
    )
    found = {k: i for i, k in written}
    conn.execute(text(f"DROP TABLE {staged}"))
    return found


def update_where(conn: Connection, table: Table, rows: list[Row], match: Sequence[str], fixed: Row) -> None:
    """UPDATE each row of `table` whose `match` columns equal a row's (the first is the id):
    that row's other keys, and `fixed` (the same for all)."""
    if not rows:
        return
    columns = list(rows[0])
    changed = [c for c in columns if c not in match]
    if conn.dialect.name != "postgresql":
        where = [table.c[c] == bindparam(f"b_{c}") for c in match]
        values: Row = {c: bindparam(f"b_{c}") for c in changed} | fixed
        conn.execute(
            update(table).where(*where).values(values), [{f"b_{k}": v for k, v in r.items()} for r in rows]
        )
        return
    staged = _staged(conn, table, columns, rows)
    assignments = [f"{c} = s.{c}" for c in changed] + [f"{c} = :{c}" for c in fixed]
    on = " AND ".join(f"t.{c} = s.{c}" for c in match)
    conn.execute(
        text(f"UPDATE {table.name} t SET {', '.join(assignments)} FROM {staged} s WHERE {on}"),
        _bindable(fixed),
    )
    conn.execute(text(f"DROP TABLE {staged}"))


def _bindable(values: Row) -> Row:
    return {k: _copy_value(v) for k, v in values.items()}
