"""Who is at the admin pages: the login check, the signed session cookie, and the CSRF token.

The session is a signed, expiring cookie (itsdangerous, NEWSLETTER_SECRET_KEY): HttpOnly,
SameSite=Strict, Secure when NEWSLETTER_BASE_URL is https, sent to /admin only. It names the
credential it was opened with by a fingerprint, so a changed password hash or a removed admin
token ends every session opened with it; logging out names its random id in the database
(`EndedAdminSession`), so the cookie is refused from then on even where it was copied to.
Each form carries a CSRF token bound to the session (an HMAC of its random id); the login
form, before there is a session, a double-submit token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete
from sqlmodel import Session, col, select

from newsletter.config import Settings
from newsletter.db import insert_ignore
from newsletter.models import EndedAdminSession, table_of, utcnow
from newsletter.passwords import verify_password
from newsletter.web.deps import SessionDep, SettingsDep

COOKIE = "newsletter_admin"
LOGIN_COOKIE = "newsletter_admin_login"  # the login form's double-submit CSRF value
PATH = "/admin"
SALT = "newsletter.admin-session"
CSRF_REFUSED = (
    "This form has expired or did not come from the admin pages. Go back, reload the page and try again."
)


@dataclass(frozen=True)
class AdminSession:
    sid: str
    via: str  # "password" or "token"
    csrf: str


class LoginRequired(Exception):
    """No valid admin session: the answer is a redirect to the login page (app.py)."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path

    def location(self) -> str:
        return f"{PATH}/login?next={quote(self.next_path, safe='/')}"  # the query quoted whole


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:24]


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_keys, salt=SALT)


def csrf_for(settings: Settings, sid: str) -> str:
    return hmac.new(settings.secret_key.encode(), f"admin-csrf:{sid}".encode(), hashlib.sha256).hexdigest()


def check_credential(settings: Settings, given: str) -> tuple[str, str] | None:
    """(how, fingerprint) if `given` is one of the admin tokens or the admin password; None if
    not. Every token is compared in constant time and the password hash always checked, so the
    time taken says nothing about which one was close."""
    token = None
    for allowed in settings.admin_tokens:
        if hmac.compare_digest(given.encode(), allowed.encode()):
            token = allowed
    password_ok = verify_password(settings.admin_password_hash, given)
    if token is not None:
        return "token", _fingerprint(token)
    if password_ok and settings.admin_password_hash:
        return "password", _fingerprint(settings.admin_password_hash)
    return None


def login_configured(settings: Settings) -> bool:
    return bool(settings.admin_password_hash or settings.admin_tokens)


def _still_valid(settings: Settings, via: str, fingerprint: str) -> bool:
    if via == "token":
        current = [_fingerprint(t) for t in settings.admin_tokens]
    else:
        current = [_fingerprint(settings.admin_password_hash)] if settings.admin_password_hash else []
    return any(hmac.compare_digest(fingerprint, f) for f in current)


def secure_cookies(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def start_session(response: Response, settings: Settings, via: str, fingerprint: str) -> None:
    """Open a session on `response` (a new random id: a session fixed in advance cannot be used)."""
    value = _serializer(settings).dumps({"sid": secrets.token_urlsafe(18), "via": via, "fp": fingerprint})
    response.set_cookie(
        COOKIE,
        value,
        max_age=settings.admin_session_hours * 3600,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(settings),
        path=PATH,
    )
    response.delete_cookie(LOGIN_COOKIE, path=f"{PATH}/login")


def end_session(response: Response, db: Session, settings: Settings, sid: str) -> None:
    """Log out: the browser forgets the cookie, and the server refuses it from now on (once `db`
    commits), should a copy of it be used elsewhere. Ended sessions whose cookies have expired
    are dropped here."""
    now = utcnow()
    db.exec(delete(EndedAdminSession).where(col(EndedAdminSession.expires_at) < now))
    ended = insert_ignore(table_of(EndedAdminSession), db.get_bind().dialect.name)  # a second click
    db.execute(ended.values(sid=sid, expires_at=now + timedelta(hours=settings.admin_session_hours)))
    response.delete_cookie(
        COOKIE, httponly=True, samesite="strict", secure=secure_cookies(settings), path=PATH
    )


def _ended(db: Session, sid: str) -> bool:
    return db.exec(select(EndedAdminSession.id).where(EndedAdminSession.sid == sid)).first() is not None


def read_session(request: Request, db: Session, settings: Settings) -> AdminSession | None:
    """The request's admin session, or None (no cookie, forged, expired, credential changed,
    logged out)."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        data = _serializer(settings).loads(value, max_age=settings.admin_session_hours * 3600)
    except BadSignature:  # SignatureExpired is one too
        return None
    if not isinstance(data, dict) or not _still_valid(settings, str(data.get("via")), str(data.get("fp"))):
        return None
    sid = str(data.get("sid"))
    if _ended(db, sid):
        return None
    return AdminSession(sid=sid, via=str(data["via"]), csrf=csrf_for(settings, sid))


def admin_session(request: Request, db: SessionDep, settings: SettingsDep) -> AdminSession:
    """A dependency: the admin session, or LoginRequired (a redirect to the login page)."""
    found = read_session(request, db, settings)
    if found is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise LoginRequired(request.url.path + query if request.method == "GET" else PATH)
    return found


Admin = Annotated[AdminSession, Depends(admin_session)]


@dataclass(frozen=True)
class AdminPost:
    """A checked admin form: the session it came with and its text fields."""

    session: AdminSession
    fields: dict[str, str]

    def text(self, name: str, max_length: int = 2000) -> str:
        """A field's text ("" when absent); 400 when longer than `max_length`."""
        value = self.fields.get(name, "")
        if len(value) > max_length:
            raise HTTPException(400, f"The field {name} is longer than {max_length} characters.")
        return value


async def _text_fields(request: Request) -> dict[str, str]:
    form = await request.form()  # parsed once and kept: a route may read its files after this
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _matches(sent: str | None, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest((sent or "").encode(), expected.encode())


async def checked_form(request: Request, session: Admin) -> AdminPost:
    """A dependency of every admin POST: the session first (no session: the body is never
    read), then the form's `csrf` field matching it (403 otherwise). Routes take their fields
    from here, never as FastAPI `Form` parameters, which are read before any dependency runs."""
    fields = await _text_fields(request)
    if not _matches(fields.get("csrf"), session.csrf):
        raise HTTPException(403, CSRF_REFUSED)
    return AdminPost(session, fields)


AdminForm = Annotated[AdminPost, Depends(checked_form)]


async def login_form(request: Request) -> dict[str, str]:
    """A dependency of the login POST: the login page's cookie must be there before the body
    is read, and the form's `csrf` must match it (double submit); 403 otherwise."""
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected:
        raise HTTPException(403, CSRF_REFUSED)
    fields = await _text_fields(request)
    if not _matches(fields.get("csrf"), expected):
        raise HTTPException(403, CSRF_REFUSED)
    return fields


def safe_next(path: str | None) -> str:
    """Where to go after logging in: an admin path on this site, never another site."""
    if not path or not path.startswith(PATH) or path.startswith("//") or "\\" in path:
        return PATH
    return path
