"""repair: add what 0002, 0003, 0004, 0006 or 0007 would have, where a store's chain skipped them

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 11:15:00.000000

On 30 Nov 2026 branches were merged whose migrations were later re-chained under the same
revision ids: main at ce32222 ran 0001 → 0005, at 6965429 0001 → 0003 → 0005, at 4d54c80
0001 → 0003 → 0004 → 0005, at 46f2f29 and e3e784d … 0005 → 0008, at 468db80 … 0006 → 0008. A
store made at one of those commits is stamped past revisions it never ran, so `db upgrade`
skipped them and said "up to date" while columns such as subscriber.token_key or
subscriber.weekday were missing (every command then failed). This revision looks for what
each of those five adds and runs the ones whose additions are absent, in order. A store that
ran the chain as it is now has all of them and this does nothing.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (the revision's file, a table it creates or alters, the column it adds there or None)
MARKERS = (
    ("0002_token_keys", "subscriber", "token_key"),
    ("0003_journey_outbox", "journey_email", None),
    ("0004_issue_pause", "issue", "paused_at"),
    ("0006_bounce_events", "bounce_event", None),
    ("0007_reader_schedule", "subscriber", "weekday"),
)


def missing(bind: sa.engine.Connection, table: str, column: str | None) -> bool:
    """Whether the store lacks `table` (or its `column`); read afresh, as each repair changes it."""
    inspector = sa.inspect(bind)
    if not inspector.has_table(table):
        return True
    return column is not None and column not in {c["name"] for c in inspector.get_columns(table)}


def revision_module(name: str) -> ModuleType:
    """One of the earlier revisions' files, loaded as a module (its name starts with a digit)."""
    spec = importlib.util.spec_from_file_location(f"_repair_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    """Run each of the five revisions whose additions the store lacks."""
    for name, table, column in MARKERS:
        if missing(op.get_bind(), table, column):
            revision_module(name).upgrade()


def downgrade() -> None:
    """Nothing: a repaired store is what 0012 means, and 0012's downgrade path applies to it."""
