"""journey email outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = ("pending", "sending", "deferred", "sent", "failed", "skipped")
UNSENT = sa.text("state IN ('pending', 'deferred', 'sending')")
# The same states as a delivery: on PostgreSQL the existing type, not a second CREATE TYPE.
STATE = sa.Enum(*STATES, name="deliverystate").with_variant(
    postgresql.ENUM(*STATES, name="deliverystate", create_type=False), "postgresql"
)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "journey_email",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("claimed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"]),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,  # like every table since 0002: ids are never handed out twice
    )
    with op.batch_alter_table("journey_email", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_journey_email_subscriber_id"), ["subscriber_id"], unique=False)
        batch_op.create_index("ix_journey_email_state_next", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "uq_journey_email_unsent",
            ["subscriber_id", "kind"],
            unique=True,
            postgresql_where=UNSENT,
            sqlite_where=UNSENT,
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("journey_email", schema=None) as batch_op:
        batch_op.drop_index("uq_journey_email_unsent")
        batch_op.drop_index("ix_journey_email_state_next")
        batch_op.drop_index(batch_op.f("ix_journey_email_subscriber_id"))
    op.drop_table("journey_email")
