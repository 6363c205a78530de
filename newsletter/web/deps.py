"""What a route receives instead of building it: settings, a session, the client, a link's reader.

Routers import this module and `responses`, never `app`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlmodel import Session

from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import Subscriber
from newsletter.tokens import Purpose

# Ids are INTEGER columns: a larger number in the URL is a 422, not a database error (a 500).
IssueId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def app_settings(request: Request) -> Settings:
    """The settings `create_app` was given (tests and the demo pass their own)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(app_settings)]


def request_session(settings: SettingsDep) -> Iterator[Session]:
    """One session per request: committed once the route has returned, before the answer is
    sent, or rolled back if the route raised. Queued emails (`db.after_commit`) go on that commit."""
    with session_scope(settings.database_url) as session:
        yield session


# scope="function": the commit happens before the response goes out, so a failed commit is an
# error answer, never a success for a change that was not stored.
SessionDep = Annotated[Session, Depends(request_session, scope="function")]


def request_client(request: Request) -> subs.Client:
    """Where the request came from, for the consent record and the rate limit."""
    return subs.Client(
        ip=request.client.host if request.client else None, user_agent=request.headers.get("user-agent")
    )


ClientDep = Annotated[subs.Client, Depends(request_client)]


def subscriber_for(purpose: Purpose) -> Callable[..., Subscriber]:
    """A dependency: the subscriber the `{token}` in the path names for `purpose`, or TokenError.

    Declare it before any body parameter: a bad link is then refused before the body is read.
    """

    def subscriber(token: str, session: SessionDep, settings: SettingsDep) -> Subscriber:
        sub, _ = subs.subscriber_for_token(session, settings, purpose, token)
        return sub

    return subscriber


async def read_fields(request: Request) -> dict[str, Any]:
    """Form fields or a JSON object; anything else is an empty dict (fields then fail validation)."""
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/json"):
            data = json.loads(await request.body() or b"{}")
            return data if isinstance(data, dict) else {}
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    except (ValueError, UnicodeDecodeError, AssertionError):
        return {}
