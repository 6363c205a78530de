"""Alembic environment: the URL comes from the settings, the schema from the SQLModel models."""

from alembic import context
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
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
