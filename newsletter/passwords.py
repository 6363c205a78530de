"""The admin password: hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second choice),
so the settings hold a hash and never the password itself."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
HASH_PREFIX = "$argon2id$"
MIN_PASSWORD = 12


class WeakPassword(ValueError):
    """A password too short to protect the admin pages."""


def hash_password(password: str) -> str:
    """The Argon2id hash of `password` (salted: two calls give two different hashes)."""
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"use at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash`; False (after the same work) with no hash."""
    if not password_hash:
        # As slow as a real check, so the answer's timing says nothing about the configuration.
        _hasher.hash(password or "-")
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
