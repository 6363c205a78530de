"""`newsletter db copy`: move the whole list to a new database (SQLite to PostgreSQL)."""

from __future__ import annotations

import typer
from rich.markup import escape

from newsletter.cli.common import console, emit_json, err
from newsletter.config import get_settings
from newsletter.db import check_url
from newsletter.dbcopy import copy_database
from newsletter.errors import OperatorError


def db_copy(
    to: str = typer.Option(
        ...,
        "--to",
        help="The database to fill, e.g. postgresql+psycopg://newsletter@/newsletter: empty, and "
        "made with `newsletter db upgrade`.",
    ),
    source: str | None = typer.Option(
        None, "--from", help="The database to copy; default NEWSLETTER_DATABASE_URL."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the rows copied per table as JSON."),
) -> None:
    """Copy the whole list into another, empty database: subscribers, consent log, suppressions,
    papers, issues, deliveries, journey emails, votes and bounces, ids kept.

    Both databases must be at this release's migration. One transaction: a copy that fails
    leaves the target empty. Stop the web app, workers, beat and the bounce endpoint first;
    then set NEWSLETTER_DATABASE_URL to the target and start them again.

    Example: newsletter db copy --to postgresql+psycopg://newsletter@/newsletter
    """
    source_url = _checked(source or get_settings().database_url, "--from")
    target_url = _checked(to, "--to")

    if err.is_terminal:  # a person watching: a large list takes minutes, say where it is
        with err.status("Copying…") as status:
            report = copy_database(
                source_url, target_url, on_table=lambda t, n: status.update(f"Copying… {t}: {n:,} rows")
            )
    else:
        report = copy_database(source_url, target_url)
    if as_json:
        return emit_json(report)
    rate = report.total / report.seconds if report.seconds else 0
    console.print(
        f"Copied {report.total:,} rows from [bold]{escape(report.source)}[/] to "
        f"[bold]{escape(report.target)}[/] in {report.seconds:.1f} s ({rate:,.0f} rows/s):",
        highlight=False,
        soft_wrap=True,
    )
    for table, rows in report.rows.items():
        console.print(f"  {table:<22} {rows:>12,} rows", highlight=False)
    console.print(
        "Next: set NEWSLETTER_DATABASE_URL to the target in the settings file, then start the "
        "services again. Keep the old database until the new one has sent an issue.",
        highlight=False,
        soft_wrap=True,
    )


def _checked(url: str, option: str) -> str:
    try:
        return check_url(url)
    except ValueError as exc:
        raise OperatorError(f"{option} is not a database URL: {exc}") from exc
