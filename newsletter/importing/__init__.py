"""Subscriber import from a CSV file: `newsletter subscribers import` and the admin API's upload.

`rows` reads and checks the file, `plan` decides each row against the store (read only),
`write` applies the plan in bulk statements. Bad rows are reported, the rest imports, in one
transaction; a dry run stops after the plan. New addresses get their confirmation email
through the journey outbox (a sweep job after commit sends them), unless the operator holds
their consent (`confirmed`), recorded as `imported` with the file's name.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.engine import Connection

from newsletter import jobs
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.importing import write
from newsletter.importing.plan import Action, ImportPlan, plan_import
from newsletter.importing.rows import COLUMNS, RowProblem, parse_csv
from newsletter.mail.transactional import sweep_journey_emails
from newsletter.models import SubscriberStatus, utcnow
from newsletter.subscriptions import CONSENT_WORDING

__all__ = ["COLUMNS", "ImportReport", "RowProblem", "import_subscribers"]

CONCURRENT = "added by someone else while this import ran; left as it is"


class ImportReport(BaseModel):
    """What an import did (or, in a dry run, would do): counts of good rows by outcome, and
    every row left alone with its line number and why."""

    file: str
    dry_run: bool
    consent: Literal["double-opt-in", "imported"]
    rows: int  # data rows in the file
    created: int  # new addresses: pending with a confirmation email queued, or confirmed
    confirmed: int  # pending addresses confirmed (consent held, `--confirmed`)
    updated: int  # known addresses whose preferences changed (`--update`)
    unchanged: int  # known addresses left as they are
    emails_queued: int  # confirmation emails written to the outbox
    skipped: list[RowProblem]  # good rows left alone on purpose (unsubscribed, bounced, erased)
    errors: list[RowProblem]  # bad rows: invalid address, line break, duplicate, bad field


def import_subscribers(
    settings: Settings,
    data: bytes,
    filename: str,
    *,
    confirmed: bool = False,
    update: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Import the CSV `data`. Never brings back an unsubscribed, bounced or erased address;
    changes a known address's preferences only with `update`. OperatorError for a file that
    cannot be read at all (not UTF-8, no header, unknown column)."""
    name = _safe_name(filename)
    parsed = parse_csv(data)
    with session_scope(settings.database_url) as session:
        conn = session.connection()
        plan = plan_import(conn, parsed.rows, confirmed=confirmed, update=update)
        report = _report(name, parsed.read, plan, dry_run, confirmed, parsed.problems)
        if dry_run:
            return report
        created, queued = _apply(conn, settings, plan, name, confirmed, update)
        if queued:
            # With a broker, a worker runs the sweep; without one it runs after this commit.
            jobs.enqueue(session, settings, sweep_journey_emails)
    return _with_outcome(report, plan, created, queued)


def _apply(
    conn: Connection, settings: Settings, plan: ImportPlan, name: str, confirmed: bool, update: bool
) -> tuple[dict[str, int], int]:
    now = utcnow()
    new = [row for row, _ in plan.todo[Action.create]]
    created = write.insert_new(
        conn, new, confirmed=confirmed, max_papers=settings.default_max_papers, now=now
    )
    source = f"import: {name}"
    if confirmed:
        confirmed_ids = {row.key: known.id for row, known in plan.todo[Action.confirm] if known}
        # A pending reader's preferences change only with --update, like any known reader's.
        write.update_known(conn, plan.todo[Action.confirm], now, confirm=True, preferences=update)
        write.record_consent(conn, created | confirmed_ids, "imported", source, now, f"imported from {name}")
        queued = 0
    else:
        write.record_consent(conn, created, "signup_requested", source, now, CONSENT_WORDING)
        write.queue_confirmations(conn, list(created.values()), now)
        queued = len(created)
    write.update_known(conn, plan.todo[Action.update], now, confirm=False)
    readers = {
        row.key: known.id
        for row, known in plan.todo[Action.update]
        if known and known.status is SubscriberStatus.confirmed
    }
    write.record_consent(conn, readers, "preferences_changed", source, now, None)
    return created, queued


def _report(
    name: str, read: int, plan: ImportPlan, dry_run: bool, confirmed: bool, errors: list[RowProblem]
) -> ImportReport:
    todo = plan.todo
    return ImportReport(
        file=name,
        dry_run=dry_run,
        consent="imported" if confirmed else "double-opt-in",
        rows=read,
        created=len(todo[Action.create]),
        confirmed=len(todo[Action.confirm]),
        updated=len(todo[Action.update]),
        unchanged=len(todo[Action.unchanged]),
        emails_queued=0 if confirmed else len(todo[Action.create]),
        skipped=sorted(plan.skipped, key=lambda p: p.line),
        errors=sorted(errors, key=lambda p: p.line),
    )


def _with_outcome(
    report: ImportReport, plan: ImportPlan, created: dict[str, int], queued: int
) -> ImportReport:
    """The report once written: addresses someone else added meanwhile are skipped, not created."""
    raced = [row for row, _ in plan.todo[Action.create] if row.key not in created]
    skipped = report.skipped + [RowProblem(line=r.line, email=r.email, reason=CONCURRENT) for r in raced]
    return report.model_copy(
        update={
            "created": len(created),
            "emails_queued": queued,
            "skipped": sorted(skipped, key=lambda p: p.line),
        }
    )


def _safe_name(filename: str) -> str:
    """The file's own name (no folders), printable, bounded: it goes into consent rows."""
    name = PurePath(filename.replace("\\", "/")).name or "upload.csv"
    return "".join(ch for ch in name if ch.isprintable())[:200]
