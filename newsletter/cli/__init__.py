"""The `newsletter` command: init, serve, db, papers, subscribers, preview, send, issues, deliveries,
stats, check, inbound, admin, demo.

Each group lives in its own module (`subscribers`, `papers`, `issues`); this one wires them to the
one `app` and keeps the few commands that start something (serve, db upgrade, demo).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from newsletter.cli import health, issues, papers
from newsletter.cli.access import admin_app
from newsletter.cli.common import OneLineErrors, console, err
from newsletter.cli.dbcopy import db_copy
from newsletter.cli.deliveries import deliveries_app
from newsletter.cli.inbound import inbound_app
from newsletter.cli.init import init
from newsletter.cli.subscribers import subs_app
from newsletter.config import get_settings
from newsletter.db import shown_url
from newsletter.envfile import describe_source, find_env_file
from newsletter.errors import OperatorError
from newsletter.logs import json_logger, setup_logging

# uvicorn and FastAPI (serve, demo) and alembic (db upgrade) are imported inside the one command
# that needs each: every other command starts in half the time.

app = typer.Typer(
    cls=OneLineErrors,
    help="Paper Digest: trending research papers, ranked for each reader.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema; moving the list to another database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(subs_app, name="subscribers")
app.add_typer(papers.papers_app, name="papers")
app.add_typer(issues.issues_app, name="issues")
app.add_typer(admin_app, name="admin")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(inbound_app, name="inbound")
app.command()(papers.preview)
app.command()(issues.send)
app.command()(issues.stats)
app.command()(init)
WITHOUT_SETTINGS = {"init", "demo"}  # the demo uses its own; init writes them
app.command()(health.check)


@app.callback()
def _main(ctx: typer.Context) -> None:
    setup_logging("WARNING")  # the CLI shows its own summaries; logs only for trouble
    if ctx.invoked_subcommand in WITHOUT_SETTINGS or ctx.resilient_parsing:
        return
    source = describe_source(find_env_file())  # a missing $NEWSLETTER_ENV_FILE stops here
    if err.is_terminal:  # a person watching: say where the settings came from (stdout stays clean)
        err.print(f"[dim]Settings: {escape(source)}[/]", highlight=False)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = typer.Option(8000, min=1, max=65535),
    workers: int = typer.Option(1, help="Web worker processes."),
    published_on_loopback: bool = typer.Option(
        False,
        help="The port is reachable from this machine only (a container published on "
        "127.0.0.1): listen on --host even with the development secret.",
    ),
) -> None:
    """Run the web app (signup, confirm, preferences, unsubscribe, archive).

    Logs at NEWSLETTER_LOG_LEVEL, one JSON line per event and per request (link tokens
    redacted). With the development secret it listens on a loopback address only.

    Example: newsletter serve --host 0.0.0.0 --port 8000
    """
    from newsletter.web.server import serve as run_web  # uvicorn and FastAPI: see the note above

    run_web(get_settings(), host, port, workers, published_on_loopback=published_on_loopback)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations to NEWSLETTER_DATABASE_URL (creates a SQLite file if needed)."""
    from alembic.util import CommandError

    from newsletter.migrate import schema_differences, upgrade

    settings = get_settings()
    url = settings.database_url
    json_logger("alembic", settings.log_level)  # "Running upgrade …" as JSON lines on stderr
    try:
        upgrade(url, revision)
    except CommandError as exc:  # alembic's word for an unknown revision: the operator's mistake
        raise OperatorError(f"could not upgrade: {exc}") from exc
    shown = shown_url(url)  # never print the password
    if revision == "head" and (differences := schema_differences(url)):
        # At the last revision yet not what the code reads: never say "up to date" then.
        raise OperatorError(
            f"the database at {shown} is at the last migration but its schema differs from this "
            f"release's: {', '.join(differences)}. Report it with this line; nothing was removed."
        )
    console.print(f"Database at [bold]{escape(shown)}[/] is up to date.")


db_app.command("copy")(db_copy)


@app.command()
def demo(
    outbox: Path = typer.Option(Path("var/demo/outbox"), help="Where the .eml files go."),
    database: Path = typer.Option(Path("var/demo/demo.db"), help="SQLite file."),
) -> None:
    """The whole journey on the embedded default: no services, SQLite, an outbox folder.

    Ingests the bundled sample feed, signs up demo readers through the real double opt-in,
    sends this week's digest and shows who got what.
    """
    from newsletter.demo import run_demo

    run_demo(outbox=outbox, database=database, console=console)
