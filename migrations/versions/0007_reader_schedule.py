"""reader schedule: each reader's weekday and time zone

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 17:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add subscriber.weekday and subscriber.timezone; NULL (every existing reader) means the
    list's NEWSLETTER_DIGEST_WEEKDAY and NEWSLETTER_TIMEZONE, so nobody's schedule moves."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weekday", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Drop both columns (every reader follows the list's schedule again)."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("timezone")
        batch_op.drop_column("weekday")
