"""Move a whole list to another database (`newsletter db copy`): the way from the embedded SQLite
file to PostgreSQL once a list outgrows it.

Every table of the models is copied parents first, ids kept, into a target at the same
migration that holds no row, in one transaction on the target: a copy that fails leaves it as
empty as it was, and a live list is never merged into. Rows go in batches, read with a
server-side cursor where there is one, so a million readers are never in memory at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, MetaData, Table, func, insert, literal_column, select, text
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

import newsletter.models  # noqa: F401 - registers the tables
from newsletter.db import make_engine, shown_url, sqlite_file
from newsletter.errors import OperatorError
from newsletter.migrate import current_revisions, head_revisions, known_revisions, schema_differences

# Rows per INSERT batch: large enough that the round trips stop mattering, small enough that a
# batch of subscribers with long interest texts stays a few megabytes.
BATCH_ROWS = 5000


@dataclass
class CopyReport:
    source: str  # the URLs as shown: passwords hidden
    target: str
    rows: dict[str, int]  # rows copied per table, in the order copied
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def copied_tables() -> list[Table]:
    """The app's tables, each after the tables its foreign keys name (alembic's own is not one)."""
    return list(SQLModel.metadata.sorted_tables)


def copy_database(
    source_url: str,
    target_url: str,
    *,
    batch_rows: int = BATCH_ROWS,
    on_table: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every row of the store at `source_url` into the empty store at `target_url`, ids
    and id counters included; `on_table(name, rows)` after each table. OperatorError, with the
    target left as it was, if they are the same database, either is not at this release's
    migration, the target holds a row, or a row cannot be written there."""
    if same_database(source_url, target_url):
        raise OperatorError(
            f"--to names the database copied from ({shown_url(target_url)}): give a new, empty one"
        )
    source, target = make_engine(source_url), make_engine(target_url)
    try:
        check_schema(source, source_url, "source")
        check_schema(target, target_url, "target")
        started = time.monotonic()
        rows: dict[str, int] = {}
        with snapshot(source) as src, target.begin() as dst:
            refuse_rows(dst, target_url)
            for table in copied_tables():
                rows[table.name] = copy_table(src, dst, table, batch_rows)
                if on_table:
                    on_table(table.name, rows[table.name])
            carry_id_counters(src, dst)
        return CopyReport(shown_url(source_url), shown_url(target_url), rows, time.monotonic() - started)
    finally:
        source.dispose()
        target.dispose()


def same_database(a: str, b: str) -> bool:
    """Whether two URLs name one database: the same SQLite file however the path is written, or
    the same server and database name whatever the driver. (Other spellings of one server, such
    as localhost and 127.0.0.1, are caught by the target's rows.)"""
    url_a, url_b = make_url(a), make_url(b)
    if url_a.get_backend_name() != url_b.get_backend_name():
        return False
    if url_a.get_backend_name() == "sqlite":
        file_a, file_b = sqlite_file(a), sqlite_file(b)
        if file_a is None or file_b is None:
            return url_a.database == url_b.database and url_a.database not in (None, "", ":memory:")
        return file_a.resolve() == file_b.resolve()
    return (url_a.host, url_a.port, url_a.database) == (url_b.host, url_b.port, url_b.database)


def check_schema(engine: Engine, url: str, role: str) -> None:
    """OperatorError unless the database is at this release's last migration with the schema
    the models declare: rows are copied column for column, so both ends must agree."""
    with engine.connect() as conn:
        current = current_revisions(conn)
    heads = head_revisions()
    where = f"the {role} database ({shown_url(url)})"
    upgrade = "run `newsletter db upgrade` with NEWSLETTER_DATABASE_URL set to it first"
    if not current:
        raise OperatorError(f"{where} has no schema: {upgrade}")
    if current - known_revisions():
        raise OperatorError(
            f"{where} is at revision {', '.join(sorted(current))}, newer than this release "
            f"({', '.join(sorted(heads))}): copy with the release that upgraded it"
        )
    if current != heads:
        raise OperatorError(
            f"{where} is at revision {', '.join(sorted(current))}, this release at "
            f"{', '.join(sorted(heads))}: {upgrade}"
        )
    if differences := schema_differences(url):
        raise OperatorError(
            f"{where} is at the last migration but differs from the models: {', '.join(differences)}"
        )


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that reads the source as of one moment, so a row written meanwhile (by a
    service left running) cannot arrive without the rows it refers to."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for reads
        else:
            conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


def refuse_rows(conn: Connection, url: str) -> None:
    """OperatorError naming the first app table of the target that holds a row. On PostgreSQL
    the tables are locked first, so none gains a row until the copy commits."""
    tables = copied_tables()
    if conn.dialect.name == "postgresql":
        names = ", ".join(conn.dialect.identifier_preparer.quote(t.name) for t in tables)
        conn.exec_driver_sql(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
    for table in tables:
        if conn.execute(select(literal_column("1")).select_from(table).limit(1)).first():
            raise OperatorError(
                f"the target database ({shown_url(url)}) already has rows in {table.name}: db copy fills "
                "an empty database only, never merges two lists; give a new one"
            )


def copy_table(src: Connection, dst: Connection, table: Table, batch_rows: int) -> int:
    """Copy one table's rows in id order, `batch_rows` at a time; how many were copied."""
    columns = list(table.columns)
    nullable_json = [c for c in columns if isinstance(c.type, JSON) and c.nullable]
    query = select(*columns, *(c.is_(None) for c in nullable_json)).order_by(*table.primary_key.columns)
    statement = insert(_writer(table))
    copied = 0
    result = src.execute(query.execution_options(yield_per=batch_rows))
    for batch in result.partitions():
        values = [_values(row, columns, nullable_json) for row in batch]
        try:
            dst.execute(statement, values)
        except DBAPIError as exc:
            detail = str(exc.orig).partition("\n")[0]
            raise OperatorError(
                f"could not copy {table.name} (rows {copied + 1} to {copied + len(values)} by id): {detail}; "
                "nothing was written to the target"
            ) from exc
        copied += len(values)
    return copied


def _writer(table: Table) -> Table:
    """`table` for the INSERT, its JSON columns writing None as SQL NULL and JSON.NULL as a JSON
    null: the two read alike, and a copy keeps whichever the source stored."""
    writer = table.to_metadata(MetaData())
    for column in writer.columns:
        if isinstance(column.type, JSON):
            column.type = JSON(none_as_null=True)
    return writer


def _values(row: Row[Any], columns: list[Column[Any]], nullable_json: list[Column[Any]]) -> dict[str, Any]:
    values = {column.key: row[i] for i, column in enumerate(columns)}
    for i, column in enumerate(nullable_json, start=len(columns)):
        if values[column.key] is None and not row[i]:  # a JSON null, not an SQL NULL
            values[column.key] = JSON.NULL
    return values


def carry_id_counters(src: Connection, dst: Connection) -> None:
    """Set each target table's id counter to the highest id the source ever gave out (an erased
    reader's too: ids are never reused, see models.NEVER_REUSE_IDS), so new rows follow the
    copied ones. Inserting explicit ids moves neither a PostgreSQL sequence nor, on SQLite,
    past ids that were given out and deleted."""
    for table in copied_tables():
        if "id" not in table.c:
            continue
        copied = dst.execute(select(func.max(table.c.id))).scalar() or 0
        top = max(copied, last_id_given(src, table.name), last_id_given(dst, table.name))
        if top:
            set_last_id(dst, table.name, top)


def last_id_given(conn: Connection, table: str) -> int:
    """The highest id the table's counter has handed out; 0 if none."""
    if conn.dialect.name == "sqlite":
        query = "SELECT seq FROM sqlite_sequence WHERE name = :t"
    else:
        query = "SELECT pg_sequence_last_value(pg_get_serial_sequence(:t, 'id')::regclass)"
    return conn.execute(text(query), {"t": table}).scalar() or 0


def set_last_id(conn: Connection, table: str, last: int) -> None:
    if conn.dialect.name == "sqlite":
        conn.execute(text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        conn.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :n)"), {"t": table, "n": last})
    else:
        conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :n)"), {"t": table, "n": last})
