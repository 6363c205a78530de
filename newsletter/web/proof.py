"""A self-hosted proof of work for the signup form, in the scheme ALTCHA uses (no third party).

The server picks a secret number up to `difficulty` and sends the SHA-256 of `salt + number`
with an HMAC of that hash; the page's script tries numbers from 0 until one hashes to it, so a
browser spends about `difficulty / 2` hashes per signup and a script that posts thousands of
addresses spends that much per address. The salt carries the expiry time, and the HMAC binds the
salt to the challenge, so neither can be changed. The caller makes a proof single-use by its salt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from newsletter.values import digits_only

LIFETIME_SECONDS = 20 * 60  # long enough to fill in the form, short enough to be worth little


@dataclass(frozen=True)
class Challenge:
    """What the page (or an API client, from GET /subscribe/challenge) needs to find the number."""

    salt: str
    challenge: str
    signature: str
    maxnumber: int
    algorithm: str = "SHA-256"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(salt: str, number: int) -> str:
    return hashlib.sha256(f"{salt}{number}".encode()).hexdigest()


def _sign(secret: str, challenge: str) -> str:
    return hmac.new(secret.encode(), f"newsletter.signup-proof:{challenge}".encode(), "sha256").hexdigest()


def issue_challenge(secret: str, difficulty: int, now: float | None = None) -> Challenge:
    """A fresh challenge whose number lies in 0..`difficulty`, valid for LIFETIME_SECONDS."""
    expires = int((time.time() if now is None else now) + LIFETIME_SECONDS)
    salt = f"{expires}.{secrets.token_hex(12)}."
    challenge = _digest(salt, secrets.randbelow(difficulty + 1))
    return Challenge(salt, challenge, _sign(secret, challenge), difficulty)


def solve(challenge: Challenge) -> str:
    """The proof a client sends back: `salt:number:signature` (what the page's script does)."""
    number = next(
        n for n in range(challenge.maxnumber + 1) if _digest(challenge.salt, n) == challenge.challenge
    )
    return f"{challenge.salt}:{number}:{challenge.signature}"


def verified_salt(secret: str, proof: str, now: float | None = None) -> str | None:
    """The salt of `proof` if it solves a challenge this server issued and it has not expired;
    None otherwise. The caller remembers used salts so a proof counts once."""
    parts = proof.split(":")
    if len(parts) != 3:
        return None
    salt, number, signature = parts
    expires = salt.split(".", 1)[0]
    if not digits_only(number) or len(number) > 12 or not digits_only(expires):
        return None
    if int(expires) < (time.time() if now is None else now):
        return None
    expected = _sign(secret, _digest(salt, int(number)))
    return salt if hmac.compare_digest(expected.encode(), signature.encode()) else None
