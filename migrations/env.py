"""Alembic environment: the URL comes from the settings, the schema from the SQLModel models."""

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import newsletter.models  # noqa: F401  (registers the tables)
from newsletter.config import get_settings
from newsletter.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run_offline() -> None:
    context.configure(url=url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url())
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a table (copy, drop, rename), and dropping a table that
            # others reference fails while foreign keys are enforced. As Alembic advises, they
            # are off while migrating (this PRAGMA only works outside a transaction) and checked
            # once done.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            _check_foreign_keys(connection)
    engine.dispose()


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    connection.commit()
    if broken:
        raise RuntimeError(f"rows referencing missing rows after migrating: {broken[:10]}")


if context.is_offline_mode():
    run_offline()
else:
    run_online()
