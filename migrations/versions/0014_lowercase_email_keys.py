"""email keys in lower case, not case-folded: straße@ and strasse@ are two readers

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 14:45:00.000000

`subscriber.email_key` was the address `casefold()`-ed, which merges different letters as well
as cases ("ß" with "ss", the ligature "ﬁ" with "fi"): a stranger signing up as ﬁona@ took the
place of fiona@. The key is now `address.lower()` (`newsletter.validation.email_key`). This
rewrites the keys of readers whose address is not ASCII (for an ASCII address both are the
same), and their consent rows' keys with them. No two rows can meet: a lower-case key tells
apart more than a folded one did. Suppression hashes of erased addresses cannot be rewritten
(the address is gone): the rows already there are marked `folded`, and `newsletter.suppression`
looks for an address's folded hash in those rows only (strasse@ erased after this is not Straße@).
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBSCRIBER = sa.table("subscriber", sa.column("id"), sa.column("email"), sa.column("email_key"))
CONSENT = sa.table("consent_event", sa.column("subscriber_id"), sa.column("email_key"))


NEVER_REUSE_IDS = {"sqlite_autoincrement": True}  # a copied table keeps it, like every table since 0002
BATCH = 10_000  # rows read at a time: a list of a million readers is not held in memory


def _rekey(key_of: Callable[[str], str]) -> None:
    conn, after = op.get_bind(), 0
    columns = (SUBSCRIBER.c.id, SUBSCRIBER.c.email, SUBSCRIBER.c.email_key)
    while rows := conn.execute(
        sa.select(*columns).where(SUBSCRIBER.c.id > after).order_by(SUBSCRIBER.c.id).limit(BATCH)
    ).all():
        after = rows[-1][0]
        for sid, email, old in rows:
            new = key_of(email)
            if email.isascii() or new == old:
                continue
            conn.execute(SUBSCRIBER.update().where(SUBSCRIBER.c.id == sid).values(email_key=new))
            conn.execute(CONSENT.update().where(CONSENT.c.subscriber_id == sid).values(email_key=new))


def upgrade() -> None:
    """Each non-ASCII address's key in lower case, on its subscriber and consent rows; the
    suppressions already there marked as hashes of folded keys."""
    _rekey(str.lower)
    with op.batch_alter_table("suppression", table_kwargs=NEVER_REUSE_IDS) as batch_op:
        batch_op.add_column(sa.Column("folded", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(sa.table("suppression", sa.column("folded")).update().values(folded=True))


def downgrade() -> None:
    """Back to case-folded keys. Two readers the lower-case keys tell apart (straße@ and
    strasse@) would get one key: the unique index refuses that, and the downgrade stops.
    Suppressions made since keep their hash of the lower-case key."""
    with op.batch_alter_table("suppression", table_kwargs=NEVER_REUSE_IDS) as batch_op:
        batch_op.drop_column("folded")
    _rekey(str.casefold)
