"""Erased addresses, kept only as hashes, so that no import brings the person back.

Erasing a subscriber deletes every row about them and leaves one `Suppression`: a hash of the
address, why and when. Operator adds and imports refuse a suppressed address. The person may
still sign up on the website: confirming that fresh double opt-in lifts the suppression, and so
does `newsletter subscribers unsuppress`.
"""

from __future__ import annotations

import hashlib

from sqlmodel import Session, select

from newsletter.errors import OperatorError
from newsletter.models import Suppression, utcnow

HASH_PREFIX = b"paper-digest suppression v1\x00"


def address_hash(email_key: str) -> str:
    """SHA-256 of the case-folded address (`Subscriber.email_key`) behind a prefix of our own.

    Not keyed with the secret key: a suppression must outlive every key rotation, and a keyed
    hash stops matching once its key is retired. The prefix keeps the value from matching the
    plain SHA-256 address hashes that marketing data sets exchange. What remains is that someone
    holding the database can test a guessed address against it.
    """
    return hashlib.sha256(HASH_PREFIX + email_key.encode()).hexdigest()


def suppression_for(session: Session, email_key: str) -> Suppression | None:
    by_hash = select(Suppression).where(Suppression.address_hash == address_hash(email_key))
    return session.exec(by_hash).first()


def suppress(session: Session, email_key: str, reason: str) -> None:
    """Keep the address from being added again (a second erase renews the entry)."""
    entry = suppression_for(session, email_key) or Suppression(
        address_hash=address_hash(email_key), reason=""
    )
    entry.reason, entry.at = reason[:40], utcnow()
    session.add(entry)


def lift(session: Session, email_key: str) -> bool:
    """Forget the suppression of an address; False if there was none."""
    entry = suppression_for(session, email_key)
    if entry is not None:
        session.delete(entry)
    return entry is not None


def refuse_suppressed(session: Session, email_key: str, address: str) -> None:
    """OperatorError if the address is suppressed: an operator may not add it back."""
    entry = suppression_for(session, email_key)
    if entry is not None:
        raise OperatorError(
            f"{address} was erased ({entry.reason}, {entry.at:%Y-%m-%d}) and is on the suppression "
            "list, so it is not added again. The person can sign up on the website; if they asked "
            f"you to add them, first run: newsletter subscribers unsuppress {address}"
        )
