"""What every command shares: the consoles, JSON output and the one-line error handler."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError, OperationalError
from typer.core import TyperGroup

from newsletter.config import ConfigError
from newsletter.errors import OperatorError
from newsletter.subscriptions import InvalidInput

# What the core raises for a mistake the operator can fix; anything else is a bug and keeps its
# traceback. Database errors are sorted by `database_problem`.
OPERATOR_MISTAKES = (OperatorError, InvalidInput, ConfigError, OSError)
# How PostgreSQL (SQLSTATE: undefined table, column) and SQLite say the schema is behind the code
_SCHEMA_BEHIND = {"42P01", "42703"}
_SQLITE_SCHEMA_BEHIND = ("no such table", "no such column")


console = Console()
err = Console(stderr=True, soft_wrap=True)


def database_problem(exc: DBAPIError) -> str | None:
    """The one line for a database that is missing its schema or cannot be reached, else None."""
    detail = str(exc.orig).partition("\n")[0]  # PostgreSQL goes on with the SQL and a hint
    if getattr(exc.orig, "sqlstate", None) in _SCHEMA_BEHIND or detail.startswith(_SQLITE_SCHEMA_BEHIND):
        return f"the database schema is missing or old ({detail}): run `newsletter db upgrade`"
    if isinstance(exc, OperationalError):
        return f"cannot reach the database: {detail}"
    return None


def operator_message(exc: Exception) -> str | None:
    """What to tell the operator about `exc`, on one line; None if it is a bug."""
    message = str(exc) if isinstance(exc, OPERATOR_MISTAKES) else None
    if isinstance(exc, DBAPIError):
        message = database_problem(exc)
    # One line per problem (a ConfigError names each bad setting on a line of its own).
    return message and "\n".join(" ".join(line.split()) for line in message.splitlines() if line.strip())


class OneLineErrors(TyperGroup):
    """The one error handler of every command: a mistake becomes one line on stderr (one per bad
    setting) and exit 1."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer may vendor its own click)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = operator_message(exc)
            if not message:
                raise
            for line in message.splitlines():
                err.print(f"[bold red]Error:[/] {escape(line)}")
            raise typer.Exit(1) from exc


def emit_json(data: Any) -> None:
    """Print models, dataclasses and plain data as indented JSON."""
    sys.stdout.write(json.dumps(to_jsonable_python(data, fallback=str), indent=2) + "\n")


def say_paused(issue_id: int, reason: str) -> None:
    console.print(f"[bold red]Paused:[/] {escape(reason)}", soft_wrap=True)
    console.print(f"Fix the cause, then run `newsletter issues resume {issue_id}`.")
