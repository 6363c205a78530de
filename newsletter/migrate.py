"""Apply the Alembic migrations programmatically (the CLI, the demo and the tests use this)."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config

from newsletter.db import make_engine


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("newsletter._migrations")))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` to `revision` (creating a SQLite file if needed)."""
    engine = make_engine(database_url, create=True)
    with engine.connect():  # makes a missing SQLite file (and its folder), as the migrations' engine will not
        pass
    engine.dispose()
    command.upgrade(alembic_config(database_url), revision)
