"""What an import does with each good row, decided from what the store already holds: a few
SELECTs for the whole file (addresses and suppressions in one array parameter on PostgreSQL,
5,000 at a time elsewhere), no writes."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, select
from sqlalchemy.engine import Connection

from newsletter.importing.rows import ImportRow, RowProblem
from newsletter.models import Subscriber, SubscriberStatus, Suppression, table_of
from newsletter.suppression import address_hash, folded_hash

SUBSCRIBERS = table_of(Subscriber)
SUPPRESSIONS = table_of(Suppression)
CHUNK = 5000  # keys per IN (…): well under PostgreSQL's and SQLite's parameter limits

T = TypeVar("T")

# Why an import never brings an address back (the person, or their mail server, said no).
LEFT_ALONE = {
    SubscriberStatus.unsubscribed: "unsubscribed; an import never subscribes them again",
    SubscriberStatus.bounced: "bounced; an import never subscribes them again",
}
SUPPRESSED = "erased (on the suppression list); an import never adds it again"


class Action(str, enum.Enum):
    create = "create"  # a new address
    confirm = "confirm"  # a pending address, confirmed by an import of held consent (--confirmed)
    update = "update"  # a known address whose preferences change (--update)
    unchanged = "unchanged"  # already there; nothing to do


@dataclass(frozen=True)
class Known:
    id: int
    status: SubscriberStatus
    preferences: dict[str, object] = field(default_factory=dict)  # as ImportRow.preferences names them

    def changes(self, row: ImportRow) -> dict[str, object]:
        """What of `row`'s preferences differs from this subscriber's."""
        return {
            name: value
            for name, value in row.preferences().items()
            if _plain(value) != _plain(self.preferences.get(name))
        }


def _plain(value: object) -> object:
    """An enum as its stored value, so a Frequency and the string the database gave compare."""
    return value.value if isinstance(value, enum.Enum) else value


@dataclass
class ImportPlan:
    """Each good row with its action (rows skipped on purpose are in `skipped`)."""

    todo: dict[Action, list[tuple[ImportRow, Known | None]]] = field(
        default_factory=lambda: {action: [] for action in Action}
    )
    skipped: list[RowProblem] = field(default_factory=list)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _matching(
    conn: Connection, column: ColumnElement[str], values: list[str]
) -> Iterator[ColumnElement[bool]]:
    """WHERE clauses that together cover `values`: on PostgreSQL one `= ANY(array)` (one
    parameter, whatever the size), elsewhere IN (…) lists of CHUNK values."""
    if conn.dialect.name == "postgresql":
        yield column == any_(bindparam("values", values, type_=ARRAY(String)))
        return
    for part in chunks(values):
        yield column.in_(part)


def known_subscribers(conn: Connection, keys: list[str]) -> dict[str, Known]:
    found: dict[str, Known] = {}
    c = SUBSCRIBERS.c
    names = ("interests", "frequency", "max_papers", "weekday", "timezone")
    for where in _matching(conn, c.email_key, keys):
        query = select(c.id, c.email_key, c.status, *(c[name] for name in names)).where(where)
        for sid, key, status, *values in conn.execute(query):
            found[key] = Known(sid, SubscriberStatus(status), dict(zip(names, values, strict=True)))
    return found


def suppressed_keys(conn: Connection, keys: list[str]) -> set[str]:
    """The keys erased: by their own hash, or by the folded one a row from before migration 0014
    holds (`suppression.folded_hash`; an import brought back Straße@ erased before it)."""
    by_hash = {address_hash(key): key for key in keys}
    by_folded: dict[str, list[str]] = {}  # one hash, several keys: Straße@ and STRAẞE@ …
    for key in keys:
        if (digest := folded_hash(key)) is not None:
            by_folded.setdefault(digest, []).append(key)
    found: set[str] = set()
    for where in _matching(conn, SUPPRESSIONS.c.address_hash, [*by_hash, *by_folded]):
        rows = conn.execute(select(SUPPRESSIONS.c.address_hash, SUPPRESSIONS.c.folded).where(where))
        for digest, folded in rows:  # a folded row stands for strasse@ and for Straße@ alike
            found.update([by_hash[digest]] if digest in by_hash else [])
            found.update(by_folded.get(digest, []) if folded else [])
    return found


def plan_import(conn: Connection, rows: list[ImportRow], *, confirmed: bool, update: bool) -> ImportPlan:
    """Decide each row: suppressed, unsubscribed and bounced addresses are skipped; new ones
    created; pending ones confirmed with `confirmed`; known ones updated only with `update`, and
    only where a preference differs (a row that changes nothing is `unchanged`)."""
    keys = [row.key for row in rows]
    known, suppressed = known_subscribers(conn, keys), suppressed_keys(conn, keys)
    plan = ImportPlan()
    for row in rows:
        sub = known.get(row.key)
        if row.key in suppressed:
            plan.skipped.append(RowProblem(line=row.line, email=row.email, reason=SUPPRESSED))
        elif sub is None:
            plan.todo[Action.create].append((row, None))
        elif sub.status in LEFT_ALONE:
            plan.skipped.append(RowProblem(line=row.line, email=row.email, reason=LEFT_ALONE[sub.status]))
        elif confirmed and sub.status is SubscriberStatus.pending:
            plan.todo[Action.confirm].append((row, sub))
        elif update and sub.changes(row):
            plan.todo[Action.update].append((row, sub))
        else:
            plan.todo[Action.unchanged].append((row, sub))
    return plan
