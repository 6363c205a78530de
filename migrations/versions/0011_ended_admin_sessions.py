"""ended admin sessions: an admin cookie logged out is refused even where it was copied to

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 07:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ended_admin_session (empty: sessions opened before it end only when they expire)."""
    op.create_table(
        "ended_admin_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sid", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sid"),
        sqlite_autoincrement=True,  # like every table since 0002: ids are never handed out twice
    )


def downgrade() -> None:
    """Drop ended_admin_session (cookies logged out become valid again until they expire)."""
    op.drop_table("ended_admin_session")
