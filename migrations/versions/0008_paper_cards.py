"""paper cards: the TL;DR, organisation, code stars and comments that Hugging Face lists

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 18:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add paper.summary, organization, github_stars and comments; existing rows get empty values
    until the next ingest of the same papers fills them."""
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("organization", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("github_stars", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("comments", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop the four columns (cards go back to title, authors and abstract)."""
    with op.batch_alter_table("paper", schema=None) as batch_op:
        for name in ("comments", "github_stars", "organization", "summary"):
            batch_op.drop_column(name)
