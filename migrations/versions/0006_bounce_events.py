"""bounce events and the subscriber's bounce score

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 17:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("hard", "soft", "policy", "complaint", "unsubscribe")
VERP_DELIVERY = sa.text("delivery_id IS NOT NULL")
VERP_JOURNEY = sa.text("journey_email_id IS NOT NULL")


def upgrade() -> None:
    """Add bounce_event and subscriber.bounce_score / bounce_score_at (0 and NULL for everyone)."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bounce_score", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("bounce_score_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.create_table(
        "bounce_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("journey_email_id", sa.Integer(), nullable=True),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.Enum(*KINDS, name="bouncekind"), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("diagnostic", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("effect", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("recorded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"]),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounce_event_subscriber_id"), ["subscriber_id"], unique=False)
        batch_op.create_index("ix_bounce_event_issue_kind", ["issue_id", "kind"], unique=False)
        batch_op.create_index(
            "uq_bounce_event_delivery",
            ["delivery_id", "kind"],
            unique=True,
            postgresql_where=VERP_DELIVERY,
            sqlite_where=VERP_DELIVERY,
        )
        batch_op.create_index(
            "uq_bounce_event_journey",
            ["journey_email_id", "kind"],
            unique=True,
            postgresql_where=VERP_JOURNEY,
            sqlite_where=VERP_JOURNEY,
        )


def downgrade() -> None:
    """Drop bounce_event and the subscriber's bounce score."""
    op.drop_table("bounce_event")
    sa.Enum(name="bouncekind").drop(op.get_bind(), checkfirst=True)
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("bounce_score_at")
        batch_op.drop_column("bounce_score")
