"""Who may call what: bearer tokens for /metrics and the admin API, the bounce webhook's secret
or signature, and signup forms posted from this site only. Each is a dependency that runs before
the body is read (the webhook's signature aside: it covers the body, which the body cap keeps under 64 KB).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter.bounces.providers.ses import load_keys
from newsletter.config import ConfigError, Settings
from newsletter.values import digits_only
from newsletter.web.deps import SettingsDep
from newsletter.web.headers import origin_of

SIGNATURE_MAX_AGE = 300  # seconds an X-Timestamp may differ from our clock: older replays fail
MIN_SECRET = 16


def check_secrets(settings: Settings) -> None:
    """Refuse (ConfigError) an SNS certificate file that cannot be read, and, in production, a
    webhook secret, metrics token, admin token or provider credential short enough to guess.
    Called when the app is made and by `newsletter serve`."""
    if settings.ses_sns_cert is not None:
        load_keys(settings.ses_sns_cert)
    if settings.mode != "production":
        return
    for name, value in (
        ("NEWSLETTER_WEBHOOK_SECRET", settings.webhook_secret),
        ("NEWSLETTER_MAILGUN_SIGNING_KEY", settings.mailgun_signing_key),
        ("NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD", settings.postmark_webhook_password),
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


ADMIN_API = "/api/admin"
NO_ADMIN_TOKEN = "Send an admin token as Authorization: Bearer <token>."


def admin_caller(request: Request, settings: SettingsDep) -> None:
    """Refuse (401) a caller without one of NEWSLETTER_ADMIN_TOKENS as a bearer token; with none
    configured, everyone. Runs before the body is read and before any id is looked up, so the
    answer never says whether a subscriber or issue exists (`AdminGate` also answers paths and
    methods no route has)."""
    if not matches_any(bearer_token(request.headers.get("authorization")), settings.admin_tokens):
        raise HTTPException(401, NO_ADMIN_TOKEN, {"WWW-Authenticate": "Bearer"})


class AdminGate:
    """The same 401 for any request under /api/admin/ without an admin token, before routing and
    the body cap: a path no route has (404), a method a route lacks (405) and an oversized body
    (413) would otherwise tell a stranger which routes exist."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.tokens = settings.admin_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # behind `--root-path` the path includes it
            path = path[len(root) :]
        if path == ADMIN_API or path.startswith(ADMIN_API + "/"):
            header = Headers(scope=scope).get("authorization")
            if not matches_any(bearer_token(header), self.tokens):
                body = {"error": "Unauthorized", "detail": NO_ADMIN_TOKEN}  # as `error_response` has it
                response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def body_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: the HMAC-SHA256 of `timestamp + "." + body` under the webhook secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


async def webhook_caller(request: Request, settings: SettingsDep) -> None:
    """Refuse (401) a webhook call that neither carries the shared secret as a bearer token nor
    signs its body with it (`X-Signature: sha256=…` over `X-Timestamp` + "." + body, the
    timestamp within SIGNATURE_MAX_AGE of now). With no secret configured, every call."""
    if not await _webhook_authorised(request, settings.webhook_secret):
        raise HTTPException(
            401,
            "Send the shared secret as Authorization: Bearer <secret>, or sign the body (X-Signature).",
            {"WWW-Authenticate": "Bearer"},
        )


async def _webhook_authorised(request: Request, secret: str | None) -> bool:
    if not secret:
        return False
    signature = request.headers.get("x-signature")
    if signature is None:
        return matches_any(bearer_token(request.headers.get("authorization")), [secret])
    stamp = request.headers.get("x-timestamp", "").strip()
    if not digits_only(stamp) or abs(time.time() - int(stamp)) > SIGNATURE_MAX_AGE:
        return False
    expected = body_signature(secret, stamp, await request.body())
    return hmac.compare_digest(signature.strip().encode(), expected.encode())


def from_this_site(request: Request, settings: SettingsDep) -> None:
    """Refuse (403) a form posted from another site: its Origin header (or, without one, its
    Referer) must be NEWSLETTER_BASE_URL's origin. A client that sends neither (an API client,
    curl) passes and is rate-limited like everyone; browsers send Origin on cross-site POSTs."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent and origin_of(sent) != origin_of(settings.base_url):
        raise HTTPException(403, f"Please sign up on our own page: {settings.base_url.rstrip('/')}/")
