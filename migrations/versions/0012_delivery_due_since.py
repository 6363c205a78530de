"""delivery due since: a row's retry window counts from when it became due, not from the issue

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 11:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEVER_REUSE_IDS = {"sqlite_autoincrement": True}  # a copied table keeps it, like every table since 0002


def upgrade() -> None:
    """Add delivery.due_since. Rows already there get their issue's last planning (never
    earlier than the issue itself, which is what the retry window counted from before), so no
    row is given up sooner than it would have been. A row inserted by the previous release
    while it still runs gets the time of its insert (the server default)."""
    # SQLite cannot ALTER in a column whose default is not a constant: the batch copies the table.
    recreate = "always" if op.get_bind().dialect.name == "sqlite" else "auto"
    with op.batch_alter_table("delivery", recreate=recreate, table_kwargs=NEVER_REUSE_IDS) as batch_op:
        batch_op.add_column(
            sa.Column(
                "due_since",
                sqlmodel.sql.sqltypes.UTCDateTime(),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=False,
            )
        )
    delivery = sa.table("delivery", sa.column("issue_id"), sa.column("due_since"))
    issue = sa.table("issue", sa.column("id"), sa.column("planned_at"), sa.column("created_at"))
    last_plan = (
        sa.select(sa.func.coalesce(issue.c.planned_at, issue.c.created_at))
        .where(issue.c.id == delivery.c.issue_id)
        .scalar_subquery()
    )
    op.execute(delivery.update().values(due_since=last_plan))


def downgrade() -> None:
    """Drop delivery.due_since (the window counts from the issue's creation again)."""
    with op.batch_alter_table("delivery", table_kwargs=NEVER_REUSE_IDS) as batch_op:
        batch_op.drop_column("due_since")
