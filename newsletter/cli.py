"""The `newsletter` command: serve, db, papers, subscribers, preview, send, issues, stats, demo."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from typer.core import TyperGroup

from newsletter import admin
from newsletter.config import ConfigError, get_settings
from newsletter.errors import OperatorError
from newsletter.logs import setup_logging
from newsletter.subscriptions import InvalidInput

# uvicorn and FastAPI (serve, demo) and alembic (db upgrade) are imported inside the one command
# that needs each: every other command starts in half the time.

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
    return message and " ".join(message.split())


class OneLineErrors(TyperGroup):
    """The one error handler of every command: a mistake becomes one line on stderr and exit 1."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer may vendor its own click)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = operator_message(exc)
            if not message:
                raise
            err.print(f"[bold red]Error:[/] {escape(message)}")
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=OneLineErrors,
    help="Paper Digest: trending research papers, ranked for each reader.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
subs_app = typer.Typer(help="Subscribers.", no_args_is_help=True)
papers_app = typer.Typer(help="Papers: ingest from a file, Hugging Face or arXiv.", no_args_is_help=True)
issues_app = typer.Typer(help="Issues (editions) and their deliveries.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(subs_app, name="subscribers")
app.add_typer(papers_app, name="papers")
app.add_typer(issues_app, name="issues")


@app.callback()
def _main() -> None:
    setup_logging("WARNING")  # the CLI shows its own summaries; logs only for trouble


def emit_json(data: Any) -> None:
    """Print models, dataclasses and plain data as indented JSON."""
    sys.stdout.write(json.dumps(to_jsonable_python(data, fallback=str), indent=2) + "\n")


# ---- serve, db ------------------------------------------------------------------------------


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
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

    from newsletter.migrate import upgrade

    url = get_settings().database_url
    try:
        upgrade(url, revision)
    except CommandError as exc:  # alembic's word for an unknown revision: the operator's mistake
        raise OperatorError(f"could not upgrade: {exc}") from exc
    shown = make_url(url).render_as_string(hide_password=True)  # never print the password
    console.print(f"Database at [bold]{escape(shown)}[/] is up to date.")


# ---- subscribers ----------------------------------------------------------------------------


@subs_app.command("list")
def subscribers_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    status: str | None = typer.Option(None, help="Only this status."),
) -> None:
    """List subscribers. Example: newsletter subscribers list --status confirmed --json"""
    rows = admin.list_subscribers(get_settings(), status)
    if as_json:
        return emit_json(rows)
    table = Table("email", "status", "frequency", "max", "interests", "created")
    for r in rows:
        table.add_row(
            r.email,
            r.status.value,
            r.frequency.value,
            str(r.max_papers),
            r.interests[:40],
            f"{r.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
    console.print(f"{len(rows)} subscriber(s)")


@subs_app.command("add")
def subscribers_add(
    email: str,
    interests: str = "",
    frequency: str = "weekly",
    max_papers: int = 10,
    confirmed: bool = typer.Option(
        False,
        help="Skip double opt-in: only for addresses whose consent you "
        "already hold (recorded as 'imported').",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a subscriber (sends a confirmation email unless --confirmed).

    Example: newsletter subscribers add ada@example.org --interests "graph neural networks"
    """
    sub = admin.add_subscriber(get_settings(), email, interests, frequency, max_papers, confirmed)
    if as_json:
        return emit_json(sub)
    console.print(f"{sub.email}: {sub.status.value}")


@subs_app.command("remove")
def subscribers_remove(
    email: str, erase: bool = typer.Option(False, help="Delete every record of them.")
) -> None:
    """Unsubscribe an address (or --erase it). Example: newsletter subscribers remove a@b.org"""
    removal = admin.remove_subscriber(get_settings(), email, erase)
    console.print(f"{removal.email}: {removal.status}")


@subs_app.command("unsuppress")
def subscribers_unsuppress(email: str) -> None:
    """Let an erased address be added again, when the person asks you to.

    Example: newsletter subscribers unsuppress ada@example.org
    """
    address = admin.unsuppress(get_settings(), email)
    console.print(f"{address}: no longer suppressed; it can be added again")


@subs_app.command("export")
def subscribers_export(
    email: str | None = typer.Argument(None),
    output: Path | None = typer.Option(None, "-o", help="File to write."),
) -> None:
    """Export one subscriber's data, or all subscribers, as JSON."""
    data = admin.export(get_settings(), email)
    text = json.dumps(data, indent=2, default=str)
    if output:
        output.write_text(text + "\n")
        console.print(f"Wrote {output}")
    else:
        sys.stdout.write(text + "\n")


# ---- papers, preview ------------------------------------------------------------------------


@papers_app.command("ingest")
def papers_ingest(
    path: Path | None = typer.Argument(None, help="A JSON feed file."),
    source: str | None = typer.Option(None, help="file | huggingface | arxiv"),
    week: str | None = typer.Option(None, help="Hugging Face ISO week, e.g. 2026-W48."),
    date: str | None = typer.Option(None, help="Hugging Face day, YYYY-MM-DD."),
    query: str | None = typer.Option(None, help="arXiv search query, e.g. cat:cs.CL."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ingest papers. Examples:

    newsletter papers ingest feed.json

    newsletter papers ingest --source huggingface --week 2026-W48

    newsletter papers ingest --source arxiv --query "cat:cs.LG AND ti:diffusion"
    """
    settings = get_settings()
    with nullcontext() if as_json else console.status("Fetching papers…", spinner="dots"):
        report = admin.ingest(settings, path=path, source=source, week=week, date=date, query=query)
    if as_json:
        return emit_json(report)
    console.print(
        f"Added {report['added']}, updated {report['updated']}, "
        f"unchanged {report['unchanged']}; {len(report['errors'])} item(s) skipped."
    )
    for line in report["errors"][:20]:
        err.print(f"  skipped: {line}")


@app.command()
def preview(
    interests: str | None = typer.Option(None, help="Free-text interests."),
    subscriber: str | None = typer.Option(None, help="Rank for this subscriber."),
    limit: int | None = typer.Option(None, min=1, max=50, help="Default: the reader's digest size."),
    as_json: bool = typer.Option(False, "--json", help="Ranked items as JSON."),
    html: Path | None = typer.Option(None, help="Write the digest HTML here."),
) -> None:
    """Show the digest someone would get from the papers in the store now.

    Example: newsletter preview --interests "robot learning" --json
    """
    result = admin.preview(get_settings(), interests=interests, email=subscriber, limit=limit)
    if html:
        html.write_text(result["html"])
    if as_json:
        return emit_json(result["items"])
    table = Table("#", "score", "title", "why")
    for i, item in enumerate(result["items"], 1):
        table.add_row(str(i), f"{item['score']:.3f}", item["title"][:70], item["why"][:50])
    console.print(table)
    if html:
        console.print(f"HTML written to {html}")


# ---- sending, issues ------------------------------------------------------------------------


@app.command()
def send(
    now: bool = typer.Option(False, "--now", help="Plan and send the current period."),
    frequency: str = typer.Option("weekly", help="weekly | daily"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan nothing; show who is due."),
    wait: bool = typer.Option(True, help="With a broker: wait and show progress."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send this period's digest; running it again in the same period sends nothing new.

    Example: newsletter send --now
    """
    if not now:
        raise OperatorError("say --now to send the current period's issue (beat sends on schedule).")
    settings = get_settings()
    result = admin.send_now(settings, frequency, dry_run=dry_run, wait=wait, show_progress=not as_json)
    if as_json:
        return emit_json(result)
    if dry_run:
        console.print(
            f"Dry run: issue {result['period']} would go to {result['due']} "
            f"subscriber(s) with {result['papers']} candidate papers. Nothing sent."
        )
        return
    c = result["counts"]
    console.print(
        f"Issue {result['issue_id']} ({result['period']}): {result['planned']} new "
        f"deliveries planned. Sent {c['sent']}, skipped {c['skipped']}, failed "
        f"{c['failed']}, still open {c['pending'] + c['deferred'] + c['sending']}."
    )
    if result["paused"]:
        _say_paused(result["issue_id"], result["paused"])


def _say_paused(issue_id: int, reason: str) -> None:
    console.print(f"[bold red]Paused:[/] {escape(reason)}", soft_wrap=True)
    console.print(f"Fix the cause, then run `newsletter issues resume {issue_id}`.")


@issues_app.command("list")
def issues_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Issues with their delivery counts."""
    rows = admin.list_issues(get_settings())
    if as_json:
        return emit_json(rows)
    table = Table("id", "frequency", "period", "papers", "sent", "pending", "failed", "skipped")
    for r in rows:
        c = r["counts"]
        table.add_row(
            str(r["id"]),
            r["frequency"],
            r["period"],
            str(r["papers"]),
            str(c["sent"]),
            str(c["pending"] + c["deferred"] + c["sending"]),
            str(c["failed"]),
            str(c["skipped"]),
        )
    console.print(table)


@issues_app.command("show")
def issues_show(issue_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One issue: its papers and delivery counts."""
    data = admin.show_issue(get_settings(), issue_id)
    if as_json:
        return emit_json(data)
    console.print(f"[bold]{data['title']}[/] (id {data['id']}, {data['frequency']} {data['period']})")
    console.print(f"Deliveries: {data['counts']}")
    if data["paused_at"]:
        console.print(f"Paused since {data['paused_at']}.")
        _say_paused(issue_id, data["pause_reason"] or "no reason recorded")
    for i, title in enumerate(data["paper_titles"][:20], 1):
        console.print(f"  {i:2d}. {title}")


@issues_app.command("resume")
def issues_resume(issue_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """Send a paused issue again once what made the relay refuse it is fixed. Rows the relay
    refused while their reader stayed subscribed are tried again.

    Example: newsletter issues resume 12
    """
    result = admin.resume_issue(get_settings(), issue_id)
    if as_json:
        return emit_json(result)
    c = result["counts"]
    console.print(
        f"Issue {issue_id} resumed: {result['put_back']} refused deliveries put back. Sent {c['sent']}, "
        f"failed {c['failed']}, still open {c['pending'] + c['deferred'] + c['sending']}."
    )


@app.command()
def stats(as_json: bool = typer.Option(False, "--json")) -> None:
    """Subscribers by status and deliveries by state, per issue."""
    data = admin.stats(get_settings())
    if as_json:
        return emit_json(data)
    console.print(f"Subscribers: {data['subscribers']}")
    for row in data["issues"]:
        console.print(f"Issue {row['id']} {row['period']}: {row['counts']}")


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
