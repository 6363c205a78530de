"""Apply the Alembic migrations programmatically (the CLI, the demo and the tests use this)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from newsletter.db import make_engine


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("newsletter._migrations")))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))  # the URL is not read here


def head_revisions() -> set[str]:
    """The revisions this release's migrations end at (one, unless the chain forks)."""
    return set(_scripts().get_heads())


def known_revisions() -> set[str]:
    """Every revision this release has a migration for: a store at another one was upgraded by a
    newer release."""
    return {script.revision for script in _scripts().walk_revisions()}


def current_revisions(conn: Connection) -> set[str]:
    """The revisions the database on `conn` is stamped at; empty before any `db upgrade`."""
    return set(MigrationContext.configure(conn).get_current_heads())


def schema_differences(database_url: str) -> list[str]:
    """What the models declare and the store lacks or has otherwise (tables, columns, indexes,
    types: alembic's comparison, as `alembic check`), one line each; [] when nothing is. What the
    store has beyond the models (an operator's own table or column) does not count."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import newsletter.models  # noqa: F401 - registers the tables

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()
    return [_describe(change) for change in diff if not _op_of(change).startswith("remove_")]


def _op_of(change: object) -> str:
    first = change[0] if isinstance(change, list | tuple) and change else change
    return first[0] if isinstance(first, tuple) else str(first)


def _describe(change: object) -> str:
    """'add_column subscriber.weekday', 'add_table suppression', … for one of alembic's diffs."""
    if isinstance(change, list):  # column changes come as a list of (op, schema, table, column, …)
        return "; ".join(_describe(c) for c in change)
    op, *args = change if isinstance(change, tuple) else (str(change),)
    names = [getattr(a, "name", None) or (str(a) if isinstance(a, str) else "") for a in args]
    return f"{op} {'.'.join(n for n in names if n)}".strip()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` to `revision` (creating a SQLite file if needed)."""
    engine = make_engine(database_url, create=True)
    with engine.connect():  # makes a missing SQLite file (and its folder), as the migrations' engine will not
        pass
    engine.dispose()
    command.upgrade(alembic_config(database_url), revision)
