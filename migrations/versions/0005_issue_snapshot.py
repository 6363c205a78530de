"""issue snapshot: what each planned issue shows of its papers

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30 15:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add issue.papers_snapshot; existing issues keep NULL and render from the paper rows."""
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("papers_snapshot", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop issue.papers_snapshot (issues then render from the current paper rows again)."""
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_column("papers_snapshot")
