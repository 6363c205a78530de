"""pending likes: the papers a signup ticked, applied to the profile at confirmation

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 18:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add subscriber.pending_likes (NULL: no picks waiting)."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_likes", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop subscriber.pending_likes (picks still waiting are lost; profiles keep applied ones)."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("pending_likes")
