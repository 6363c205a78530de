"""Erased addresses, kept only as hashes, so that no import brings the person back.

Erasing a subscriber deletes every row about them and leaves one `Suppression`: a hash of the
address, why and when. Operator adds and imports refuse a suppressed address. The person may
still sign up on the website: confirming that fresh double opt-in lifts the suppression, and so
does `newsletter subscribers unsuppress`.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session, col, select

from newsletter.db import upsert
from newsletter.errors import OperatorError
from newsletter.models import Suppression, table_of, utcnow

HASH_PREFIX = b"paper-digest suppression v1\x00"


def address_hash(email_key: str) -> str:
    """SHA-256 of the address's lookup key (`Subscriber.email_key`) behind a prefix of our own.

    Not keyed with the secret key: a suppression must outlive every key rotation, and a keyed
    hash stops matching once its key is retired. The prefix keeps the value from matching the
    plain SHA-256 address hashes that marketing data sets exchange. What remains is that someone
    holding the database can test a guessed address against it.
    """
    return hashlib.sha256(HASH_PREFIX + email_key.encode()).hexdigest()


def folded_hash(email_key: str) -> str | None:
    """The hash an erasure before migration 0014 stored, of the key case-folded (straße@ as
    strasse@), where it differs: it cannot be rewritten without the address. It is looked for
    only in those rows (`Suppression.folded`): since 0014, strasse@'s hash is strasse@'s own."""
    folded = email_key.casefold()
    return address_hash(folded) if folded != email_key else None


def _rows_of(email_key: str) -> ColumnElement[bool]:
    exact = col(Suppression.address_hash) == address_hash(email_key)
    folded = folded_hash(email_key)
    return (
        exact
        if folded is None
        else or_(exact, and_(col(Suppression.folded), col(Suppression.address_hash) == folded))
    )


def suppression_for(session: Session, email_key: str) -> Suppression | None:
    return session.exec(select(Suppression).where(_rows_of(email_key)).order_by(col(Suppression.id))).first()


def suppress(session: Session, email_key: str, reason: str) -> None:
    """Keep the address from being added again (a second erase renews the entry).

    One statement, written at once: erasures (or complaints) at the same time each read "not
    suppressed" and each inserted, and all but one broke the unique hash (a 500)."""
    entry = {"address_hash": address_hash(email_key), "reason": reason[:40], "at": utcnow()}
    session.execute(upsert(table_of(Suppression), session.get_bind().dialect.name, "address_hash", entry))


def lift(session: Session, email_key: str) -> bool:
    """Forget the suppression of an address; False if there was none."""
    entries = session.exec(select(Suppression).where(_rows_of(email_key))).all()
    for entry in entries:
        session.delete(entry)
    return bool(entries)


def refuse_suppressed(session: Session, email_key: str, address: str) -> None:
    """OperatorError if the address is suppressed: an operator may not add it back."""
    entry = suppression_for(session, email_key)
    if entry is not None:
        raise OperatorError(
            f"{address} was erased ({entry.reason}, {entry.at:%Y-%m-%d}) and is on the suppression "
            "list, so it is not added again. The person can sign up on the website; if they asked "
            f"you to add them, first run: newsletter subscribers unsuppress {address}"
        )
