"""links name a random per-subscriber key; ids are never reused

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

- `subscriber.token_key`: 128 random bits per row (unique), what links name instead of the id.
  Existing rows get one here.
- `suppression`: erased addresses, as hashes, that an import may not bring back.
- `subscriber.pending_interests`: what a signup of a known address asked for, applied on
  confirmation (until then the owner's interests stay).
- SQLite: every table is rebuilt with AUTOINCREMENT, so an erased row's id is never handed out
  again. (The next id continues from the highest id still present: an id freed at the end of a
  table before this migration can come back once; links no longer name ids, so that is harmless.)
  PostgreSQL sequences never reuse ids and need nothing.
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("consent_event", "issue", "paper", "subscriber", "delivery", "vote")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _rebuild(autoincrement: bool) -> None:
    """SQLite: copy every table into one declared with (or without) AUTOINCREMENT."""
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def _backfill_token_keys() -> None:
    subscriber = sa.table("subscriber", sa.column("id", sa.Integer), sa.column("token_key", sa.String))
    bind = op.get_bind()
    ids = [row.id for row in bind.execute(sa.select(subscriber.c.id).where(subscriber.c.token_key.is_(None)))]
    update = (
        subscriber.update()
        .where(subscriber.c.id == sa.bindparam("row_id"))
        .values(token_key=sa.bindparam("key"))
    )
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        bind.execute(update, [{"row_id": i, "key": secrets.token_urlsafe(16)} for i in chunk])


def upgrade() -> None:
    if _sqlite():
        _rebuild(autoincrement=True)
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_suppression_address_hash", "suppression", ["address_hash"], unique=True)
    with op.batch_alter_table("subscriber", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("token_key", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("pending_interests", sa.Text(), nullable=True))
    _backfill_token_keys()
    with op.batch_alter_table("subscriber", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.alter_column("token_key", existing_type=sa.String(length=32), nullable=False)
        batch.create_index("ix_subscriber_token_key", ["token_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("subscriber", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index("ix_subscriber_token_key")
        batch.drop_column("token_key")
        batch.drop_column("pending_interests")
    op.drop_index("ix_suppression_address_hash", table_name="suppression")
    op.drop_table("suppression")
    if _sqlite():
        _rebuild(autoincrement=False)
