"""`newsletter check`: the readiness checks of `/readyz`, from the command line."""

from __future__ import annotations

import typer
from rich.markup import escape

from newsletter.cli.common import console, emit_json
from newsletter.config import get_settings


def check(as_json: bool = typer.Option(False, "--json")) -> None:
    """Check the database, migrations, broker, and that a worker and beat are alive (their
    heartbeats are younger than NEWSLETTER_HEARTBEAT_MAX_AGE_SECONDS). Exit 1 if any fails.

    Examples: newsletter check;  newsletter check --json
    """
    from newsletter.readiness import check_readiness  # alembic: only this command needs it

    report = check_readiness(get_settings())
    if as_json:
        emit_json(report)
    else:
        for c in report.checks:
            mark = "[green]ok  [/]" if c.ok else "[bold red]FAIL[/]"
            console.print(f"{mark} {c.name}: {escape(c.detail)}", soft_wrap=True, highlight=False)
        console.print("Ready." if report.ready else f"Not ready: {', '.join(c.name for c in report.failed)}.")
    if not report.ready:
        raise typer.Exit(1)
