"""Who may call what: bearer tokens for /metrics, checked before the body is read."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from fastapi import HTTPException, Request

from newsletter.config import ConfigError, Settings
from newsletter.web.deps import SettingsDep

MIN_SECRET = 16


def check_secrets(settings: Settings) -> None:
    """Refuse (ConfigError) to serve in production with a metrics or admin token short enough
    to guess. Called when the app is made and by `newsletter serve`."""
    if settings.mode != "production":
        return
    for name, value in (
        ("NEWSLETTER_METRICS_TOKEN", settings.metrics_token),
        *(("NEWSLETTER_ADMIN_TOKENS", token) for token in settings.admin_tokens),
    ):
        if value is not None and len(value) < MIN_SECRET:
            raise ConfigError(f"{name} is shorter than {MIN_SECRET} characters; use a long random value.")


def bearer_token(header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (the scheme in any case, RFC 9110 §11.1);
    None for any other scheme, no scheme, or no token."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def matches_any(given: str | None, allowed: Iterable[str]) -> bool:
    """Whether `given` is one of `allowed`, each compared in constant time (all of them, always)."""
    found = False
    for secret in allowed:
        found |= given is not None and hmac.compare_digest(given.encode(), secret.encode())
    return found


def metrics_caller(request: Request, settings: SettingsDep) -> None:
    """Refuse (401) a caller without NEWSLETTER_METRICS_TOKEN or one of NEWSLETTER_ADMIN_TOKENS
    as a bearer token; with none configured, everyone."""
    allowed = [t for t in (settings.metrics_token, *settings.admin_tokens) if t]
    if not matches_any(bearer_token(request.headers.get("authorization")), allowed):
        raise HTTPException(
            401, "Send a metrics token as Authorization: Bearer <token>.", {"WWW-Authenticate": "Bearer"}
        )
