"""`newsletter subscribers …`: list, add, import, update, remove, unsuppress, export, show."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import typer
from pydantic import ValidationError
from rich.markup import escape

from newsletter import admin, history, operations, privacy
from newsletter.cli.common import console, emit_json, err
from newsletter.config import get_settings
from newsletter.errors import OperatorError
from newsletter.history import JourneyRecord
from newsletter.importing import ImportReport, import_subscribers
from newsletter.ledger.listing import DeliveryRecord
from newsletter.models import Frequency, SubscriberPublic
from newsletter.operations import SubscriberChange
from newsletter.schedule import WEEKDAYS
from newsletter.validation import InvalidInput, clean_interests, clean_timezone, clean_weekday
from newsletter.values import shorten

subs_app = typer.Typer(help="Subscribers.", no_args_is_help=True)


@subs_app.command("list")
def subscribers_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    status: str | None = typer.Option(None, help="Only this status."),
) -> None:
    """List subscribers. Example: newsletter subscribers list --status confirmed --json"""
    rows = admin.list_subscribers(get_settings(), status)
    if as_json:
        return emit_json(rows)
    # One line a reader, never cut: a table at 80 columns (piped, or a small terminal) cut the
    # addresses ("ada@example.…"), which are what the operator greps for.
    for r in rows:
        since = f"since {r.created_at:%Y-%m-%d %H:%M} UTC"
        what = f"{r.status.value}, {r.frequency.value}, {r.max_papers} papers, {since}"
        said = f": {escape(shorten(r.interests, 60, one_line=True))}" if r.interests else ""
        console.print(f"[bold]{escape(r.email)}[/] {what}{said}", soft_wrap=True)
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
    resubscribe: bool = typer.Option(
        False, help="With --confirmed: confirm a reader who unsubscribed or bounced (they asked you to)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a subscriber (sends a confirmation email unless --confirmed).

    Example: newsletter subscribers add ada@example.org --interests "graph neural networks"
    """
    if resubscribe and not confirmed:
        raise OperatorError("--resubscribe goes with --confirmed")
    sub = admin.add_subscriber(
        get_settings(), email, interests, frequency, max_papers, confirmed, resubscribe=resubscribe
    )
    if as_json:
        return emit_json(sub)
    console.print(f"{sub.email}: {sub.status.value}")


@subs_app.command("update")
def subscribers_update(
    email: str,
    interests: str | None = typer.Option(None, help="New interests (free text)."),
    frequency: Frequency | None = typer.Option(None, case_sensitive=False, help="weekly | daily"),
    max_papers: int | None = typer.Option(None, min=1, max=50, help="Papers per digest."),
    weekday: str | None = typer.Option(
        None,
        help="Their weekly day: 0-6 (0 = Monday) or a day's name (mon, Monday); '' for the list's day.",
    ),
    timezone: str | None = typer.Option(
        None, help="Their IANA time zone, e.g. Europe/Berlin; '' for the list's zone."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Change a pending or confirmed reader's preferences (recorded in their consent log).

    Example: newsletter subscribers update ada@example.org --max-papers 5 --weekday fri
    """
    change = checked_change(interests, frequency, max_papers, weekday, timezone)
    sub = operations.change_subscriber(get_settings(), email, change, admin.CLI_CLIENT)
    if as_json:
        return emit_json(sub)
    console.print(
        f"{escape(sub.email)}: {sub.frequency.value} ({slot_text(sub)}), up to {sub.max_papers} papers; "
        f"{escape(sub.interests)}",
        soft_wrap=True,
        highlight=False,
    )


LIST_ZONE = "the list's zone"


def slot_text(sub: SubscriberPublic) -> str:
    """The reader's slot as stored: "Friday, Asia/Tokyo", "every day, the list's zone"."""
    if sub.frequency is Frequency.daily:
        day = "every day"
    else:
        day = "the list's day" if sub.weekday is None else WEEKDAYS[sub.weekday]
    return f"{day}, {sub.timezone or LIST_ZONE}"


def checked_change(
    interests: str | None,
    frequency: Frequency | None,
    max_papers: int | None,
    weekday: str | None,
    timezone: str | None,
) -> SubscriberChange:
    """The options of `update` as a change, each checked as `add`, the import and the preferences
    page check it: a bad value is one line naming what is wrong, never pydantic's report."""
    if interests is not None:
        interests = clean_interests(interests)  # "Interests are limited to 2000 characters."
    day: int | Literal[""] | None = None
    if weekday is not None:
        day = clean_weekday(weekday)
        day = "" if day is None else day  # empty: back to the list's day
    if timezone is not None:
        timezone = clean_timezone(timezone) or ""  # empty: back to the list's zone
    values = {"interests": interests, "frequency": frequency, "max_papers": max_papers, "weekday": day}
    try:
        return SubscriberChange(**values, timezone=timezone)
    except ValidationError as exc:  # what the checks above let through: name the option
        problems = [f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()]
        raise InvalidInput("; ".join(problems)) from exc


@subs_app.command("remove")
def subscribers_remove(
    email: str, erase: bool = typer.Option(False, help="Delete every record of them.")
) -> None:
    """Unsubscribe an address (or --erase it). Example: newsletter subscribers remove a@b.org"""
    removal = admin.remove_subscriber(get_settings(), email, erase)
    console.print(f"{removal.email}: {removal.status}")


@subs_app.command("forget-unconfirmed")
def subscribers_forget_unconfirmed() -> None:
    """Delete the signups never confirmed within NEWSLETTER_FORGET_UNCONFIRMED_DAYS (beat does
    it daily; without a broker, run this from cron)."""
    settings = get_settings()
    if not settings.forget_unconfirmed_days:
        raise OperatorError("NEWSLETTER_FORGET_UNCONFIRMED_DAYS is 0: unconfirmed signups are kept")
    count = privacy.forget_unconfirmed(settings)
    days = settings.forget_unconfirmed_days
    console.print(f"Forgot {count} signup{'' if count == 1 else 's'} not confirmed within {days} days.")


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


@subs_app.command("import")
def subscribers_import(
    file: Path = typer.Argument(..., help="CSV with a header row: email[,interests,frequency,…]."),
    confirmed: bool = typer.Option(
        False, "--confirmed", help="You hold their consent: no confirmation email (recorded as 'imported')."
    ),
    update: bool = typer.Option(False, "--update", help="Change the preferences of known addresses too."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would happen; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import subscribers from a CSV file (UTF-8). Columns: email, and optionally interests,
    frequency, max_papers, weekday, timezone. New addresses get the double-opt-in email unless
    --confirmed. Unsubscribed, bounced and erased addresses are never brought back.

    Example: newsletter subscribers import readers.csv --dry-run
    """
    if not file.is_file():
        raise OperatorError(f"no such file: {file}")
    report = import_subscribers(
        get_settings(), file.read_bytes(), file.name, confirmed=confirmed, update=update, dry_run=dry_run
    )
    if as_json:
        return emit_json(report)
    print_import_report(report)


def print_import_report(report: ImportReport) -> None:
    for problem in report.errors:
        err.print(
            f"line {problem.line} ({escape(problem.email or '-')}): {escape(problem.reason)}", soft_wrap=True
        )
    for problem in report.skipped:
        console.print(
            f"line {problem.line} ({escape(problem.email or '-')}) skipped: {escape(problem.reason)}"
        )
    verb = "Would import" if report.dry_run else "Imported"
    console.print(
        f"{verb} {report.file}: {report.rows} row(s); created {report.created}, "
        f"confirmed {report.confirmed}, updated {report.updated}, unchanged {report.unchanged}, "
        f"skipped {len(report.skipped)}, "
        f"bad {len(report.errors)}; confirmation emails queued {report.emails_queued}."
        + (" Nothing written." if report.dry_run else "")
    )


@subs_app.command("show")
def subscribers_show(email: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One reader's history: status, preferences, consent, every email sent, failures, bounces
    and votes.

    Example: newsletter subscribers show ada@example.org
    """
    h = history.subscriber_history(get_settings(), email)
    if as_json:
        return emit_json(h)
    s = h.subscriber
    say(
        f"[bold]{escape(s.email)}[/]: {s.status.value}, {s.frequency.value} ({slot_text(s)}), "
        f"up to {s.max_papers} papers"
    )
    say(f"Interests: {escape(s.interests) or '(none)'}")
    say(f"Consent ({len(h.consent)}):")
    for c in h.consent:
        where = ", ".join(x for x in (c.ip, c.user_agent) if x)
        say(f"  {c.at:%Y-%m-%d %H:%M:%S} UTC {c.event}" + (f" ({escape(where)})" if where else ""))
    say(f"Digests ({len(h.digests)}):")
    for d in h.digests:
        say(f"  {d.period} {d.state.value}, {tries(d)}")
    say(f"Journey emails ({len(h.journey_emails)}):")
    for j in h.journey_emails:
        say(f"  {j.kind} {j.state.value}, {tries(j)}")
    say(f"Failures ({len(h.failures)}):")
    for f in h.failures:
        name = f.period if isinstance(f, DeliveryRecord) else f.kind
        say(f"  {name} {f.state.value} {f.smtp_code or '-'}: {escape(f.error or 'no reply recorded')}")
    say(f"Bounces and complaints ({len(h.bounces)}):")
    for b in h.bounces:
        say(f"  {b.at:%Y-%m-%d %H:%M:%S} UTC {b.event}: {escape(b.wording or '')}")
    say(f"Bounce reports ({len(h.bounce_reports)}):")
    for r in h.bounce_reports:
        kind = f"{r.kind.value} {r.status} via {r.source}"
        say(f"  {r.received_at:%Y-%m-%d %H:%M:%S} UTC {kind}: {escape(r.diagnostic)}")
    say(f"Votes ({len(h.votes)}):")
    for v in h.votes:
        say(f"  {'+1' if v.direction > 0 else '-1'} {escape(v.paper_title)} (issue {v.issue_id})")


def say(line: str) -> None:
    console.print(line, soft_wrap=True, highlight=False)  # never cut an address or a reply


def tries(r: DeliveryRecord | JourneyRecord) -> str:
    sent = f", sent {r.sent_at:%Y-%m-%d %H:%M:%S} UTC" if r.sent_at else ""
    return f"{r.attempts} attempt(s), code {r.smtp_code or '-'}{sent}"
