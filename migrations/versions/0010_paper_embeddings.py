"""paper embeddings: each paper's vector under an embedding model, computed once

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 20:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add paper_embedding (empty: vectors are computed at the next ingest or issue)."""
    op.create_table(
        "paper_embedding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["paper_id"], ["paper.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("paper_id", "model", name="uq_paper_embedding"),
        sqlite_autoincrement=True,  # like every table since 0002: ids are never handed out twice
    )


def downgrade() -> None:
    """Drop paper_embedding (the vectors can be computed again)."""
    op.drop_table("paper_embedding")
