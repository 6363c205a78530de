"""`newsletter deliveries list`: single deliveries by state, with the SMTP code and reply."""

from __future__ import annotations

import typer
from rich.markup import escape

from newsletter import inspection
from newsletter.cli.common import console, emit_json
from newsletter.config import get_settings
from newsletter.models import MAX_ROW_ID

deliveries_app = typer.Typer(help="Single deliveries: who got what, and why not.", no_args_is_help=True)


def print_page(page: inspection.DeliveryPage, more_hint: str) -> None:
    """A table of deliveries, then how many and how to see the next page."""
    if not page.rows:
        console.print(f"No {'/'.join(s.value for s in page.states)} deliveries.")
        return
    # Two lines a row, never cut: addresses and replies are what the operator came for.
    for r in page.rows:
        when = f"{r.last_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if r.last_attempt_at else "never"
        tries = f"{r.attempts} attempt{'' if r.attempts == 1 else 's'}"
        console.print(
            f"#{r.id} {r.period} [bold]{escape(r.email)}[/] {r.state.value}, {tries}, "
            f"code {r.smtp_code or '-'}, last attempt {when}",
            soft_wrap=True,
        )
        if r.error:
            console.print(f"    {escape(r.error)}", soft_wrap=True, highlight=False)
    console.print(f"{len(page.rows)} deliver{'y' if len(page.rows) == 1 else 'ies'} shown.")
    if page.next_after is not None:
        console.print(f"More: {more_hint} --after {page.next_after}")


@deliveries_app.command("list")
def deliveries_list(
    state: list[str] | None = typer.Option(
        None,
        help="pending | sending | deferred | sent | failed | skipped; repeat for several "
        "(default: failed and deferred).",
    ),
    issue: int | None = typer.Option(None, min=1, max=MAX_ROW_ID, help="Only this issue's deliveries."),
    email: str | None = typer.Option(None, help="Only this reader's deliveries."),
    limit: int = typer.Option(100, help="At most this many rows."),
    after: int = typer.Option(
        0, min=0, max=MAX_ROW_ID, help="Continue after this delivery id (the last row shown)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Deliveries by state with attempts, the SMTP code and reply, and the last attempt.

    Examples: newsletter deliveries list --state deferred --issue 3;
    newsletter deliveries list --state failed --json;
    newsletter deliveries list --state sent --state failed --email ada@example.org
    """
    settings = get_settings()
    page = inspection.list_deliveries(settings, state, issue_id=issue, email=email, limit=limit, after=after)
    if as_json:
        return emit_json(page)
    hint = "newsletter deliveries list" + "".join(f" --state {s.value}" for s in page.states)
    hint += (f" --issue {issue}" if issue is not None else "") + (f" --email {email}" if email else "")
    print_page(page, f"{hint} --limit {limit}")
