"""`newsletter send`, `newsletter issues …` and `newsletter stats`: editions and their deliveries."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from newsletter import admin, inspection, operations
from newsletter.cli.common import console, emit_json, say_paused
from newsletter.cli.deliveries import print_page
from newsletter.config import Settings, get_settings
from newsletter.errors import OperatorError
from newsletter.models import MAX_ROW_ID
from newsletter.testsend import send_test

issues_app = typer.Typer(help="Issues (editions) and their deliveries.", no_args_is_help=True)
ISSUE_ID = typer.Argument(..., min=1, max=MAX_ROW_ID, help="The issue's id (`newsletter issues list`).")


def send(
    now: bool = typer.Option(False, "--now", help="Plan and send the current period."),
    frequency: str | None = typer.Option(None, help="weekly | daily (default weekly)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan nothing; show who is due."),
    wait: bool | None = typer.Option(
        None,
        help="With a broker: check that a worker answers, then wait and show progress (the "
        "default). --no-wait queues the send for the workers and returns.",
    ),
    as_json: bool = typer.Option(False, "--json"),
    test: str | None = typer.Option(
        None,
        "--test",
        metavar="ADDRESS",
        help="Send one test digest to ADDRESS instead ('[Test]', no ledger).",
    ),
    subscriber: str | None = typer.Option(None, help="With --test: the digest this subscriber would get."),
    interests: str | None = typer.Option(None, help="With --test: the digest for these interests."),
) -> None:
    """Send this period's digest; running it again in the same period sends nothing new.

    With a broker it first pings the workers (NEWSLETTER_WORKER_PING_TIMEOUT_SECONDS) and stops
    with an error if none answers.

    Examples: newsletter send --now;  newsletter send --now --no-wait;
    newsletter send --test me@example.org --subscriber ada@example.org
    """
    settings = get_settings()
    if test is not None:
        if given := period_flags(now, frequency, dry_run, wait):
            raise OperatorError(
                f"--test ADDRESS sends one test digest at once; it takes no {', '.join(given)}"
            )
        return send_test_digest(settings, test, subscriber, interests, as_json)
    if subscriber or interests:
        raise OperatorError("--subscriber and --interests go with --test ADDRESS")
    if not now:
        raise OperatorError("say --now to send the current period's issue (beat sends on schedule).")
    result = admin.send_now(
        settings, frequency or "weekly", dry_run=dry_run, wait=wait is not False, show_progress=not as_json
    )
    if as_json:
        return emit_json(result)
    if dry_run:
        console.print(
            f"Dry run: issue {result['period']} would go to {result['due']} "
            f"subscriber(s) with {result['papers']} candidate papers. Nothing sent."
            + ("" if result["papers"] else " No papers yet: run `newsletter papers ingest` first.")
        )
        return
    c = result["counts"]
    if result["queued"]:
        console.print(
            f"Issue {result['issue_id']} ({result['period']}): {result['planned']} new deliveries "
            f"planned and queued; a worker sends them. Follow with `newsletter issues show "
            f"{result['issue_id']}`."
        )
        return
    console.print(
        f"Issue {result['issue_id']} ({result['period']}): {result['planned']} new "
        f"deliveries planned. Sent {c['sent']}, skipped {c['skipped']}, failed "
        f"{c['failed']}, still open {c['pending'] + c['deferred'] + c['sending']}."
    )
    if result["paused"]:
        say_paused(result["issue_id"], result["paused"])


def period_flags(now: bool, frequency: str | None, dry_run: bool, wait: bool | None) -> list[str]:
    """The flags of a period's send that were given. A test send takes none: it would ignore
    them silently (--dry-run sent the test all the same)."""
    flags = {"--now": now, "--frequency": frequency is not None, "--dry-run": dry_run}
    flags["--wait" if wait else "--no-wait"] = wait is not None
    return [flag for flag, given in flags.items() if given]


def send_test_digest(
    settings: Settings, to: str, subscriber: str | None, interests: str | None, as_json: bool
) -> None:
    result = send_test(settings, to, subscriber=subscriber, interests=interests)
    if as_json:
        return emit_json(result)
    console.print(
        f"Sent {escape(result.subject)!r} ({result.papers} papers, built for {escape(result.built_for)}) "
        f"to {escape(result.to)}; Message-ID {escape(result.message_id)}. No ledger row written."
    )


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
def issues_show(
    issue_id: int = ISSUE_ID,
    failures: bool = typer.Option(False, "--failures", help="List failed and deferred deliveries and why."),
    limit: int | None = typer.Option(None, help="With --failures: at most this many rows (100)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One issue: its papers and delivery counts; with --failures, who was not sent and why.

    Example: newsletter issues show 3 --failures
    """
    if limit is not None and not failures:
        raise OperatorError("--limit goes with --failures")
    limit = 100 if limit is None else limit  # the next page's hint said "--limit None"
    settings = get_settings()
    data = admin.show_issue(settings, issue_id)
    page = inspection.issue_failures(settings, issue_id, limit) if failures else None
    if as_json:
        return emit_json({**data, "failures": page} if page else data)
    console.print(f"[bold]{data['title']}[/] (id {data['id']}, {data['frequency']} {data['period']})")
    console.print(f"Deliveries: {data['counts']}")
    b = data["bounces"]
    console.print(
        f"Bounced after the 250: hard {b['hard']}, soft {b['soft']}, policy {b['policy']}; "
        f"complaints {b['complaint']}"
    )
    if data["paused_at"]:
        console.print(f"Paused since {data['paused_at']}.")
        say_paused(issue_id, data["pause_reason"] or "no reason recorded")
    if page is not None:
        hint = f"newsletter deliveries list --issue {issue_id} --limit {limit}"
        return print_page(page, hint)
    for i, title in enumerate(data["paper_titles"][:20], 1):
        console.print(f"  {i:2d}. {escape(title)}")
    if len(data["paper_titles"]) > 20:
        console.print(f"  … and {len(data['paper_titles']) - 20} more (all of them: --json)")


@issues_app.command("pause")
def issues_pause(
    issue_id: int = ISSUE_ID,
    reason: str = typer.Option("", help="Why, for whoever resumes it."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stop sending an issue until `newsletter issues resume ID`.

    Example: newsletter issues pause 12 --reason "wrong papers"
    """
    result = operations.pause_issue(get_settings(), issue_id, reason)
    if as_json:
        return emit_json(result)
    say_paused(issue_id, result.pause_reason or "paused")


@issues_app.command("resume")
def issues_resume(issue_id: int = ISSUE_ID, as_json: bool = typer.Option(False, "--json")) -> None:
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


def stats(as_json: bool = typer.Option(False, "--json")) -> None:
    """Subscribers by status and deliveries by state, per issue."""
    data = admin.stats(get_settings())
    if as_json:
        return emit_json(data)
    console.print(f"Subscribers: {data['subscribers']}")
    for row in data["issues"]:
        console.print(f"Issue {row['id']} {row['period']}: {row['counts']}")
