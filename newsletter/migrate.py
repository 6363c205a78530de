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
    make_engine(database_url).dispose()  # creates the folder of a SQLite file
    command.upgrade(alembic_config(database_url), revision)
