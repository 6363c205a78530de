"""What a route receives instead of building it: settings, a session, the client, a link's reader,
the request body as a model, and the rate limits that come before it (`auth` has the other checks).

Routers import this module, `auth` and `responses`, never `app`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Generic, TypeVar, get_origin

from fastapi import Depends, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from newsletter import subscriptions as subs
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.models import MAX_ROW_ID, Subscriber
from newsletter.ratelimit import client_key
from newsletter.tokens import Purpose, TokenError, TokenReason
from newsletter.values import load_json
from newsletter.web.responses import sends_json

# Ids are INTEGER columns: a larger number in the URL is a 422, not a database error (a 500).
IssueId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Body = TypeVar("Body", bound=BaseModel)
BODY_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "application/json")


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


def subscriber_unless_erased(purpose: Purpose) -> Callable[..., Subscriber | None]:
    """As `subscriber_for`, but None for a link whose reader was erased (TokenReason.gone), for
    the requests that have nothing left to do then and say so (unsubscribe, erase again)."""
    named = subscriber_for(purpose)

    def subscriber(token: str, session: SessionDep, settings: SettingsDep) -> Subscriber | None:
        try:
            return named(token, session, settings)
        except TokenError as exc:
            if exc.reason is TokenReason.gone:
                return None
            raise

    return subscriber


class FormOrJson(Generic[Body]):
    """A dependency: the request body as `model`, from a form (urlencoded or multipart) or a JSON
    object; a RequestValidationError (the 422 "Invalid request" answer) when it does not fit.

    FastAPI sees only the `request` this reads, so routers use `FormOrJsonRoute`, which documents
    the body in OpenAPI from `model` (keep body models flat: no nested models).
    """

    def __init__(self, model: type[Body]) -> None:
        self.model = model
        # fields a form may repeat (checkboxes of one name): read as every value given
        self.lists = frozenset(n for n, f in model.model_fields.items() if get_origin(f.annotation) is list)

    async def __call__(self, request: Request) -> Body:
        data = await _fields(request, self.lists)
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc

    def openapi(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        return {"required": True, "content": {media: {"schema": schema} for media in BODY_MEDIA_TYPES}}


async def _fields(request: Request, lists: frozenset[str] = frozenset()) -> Any:
    """The JSON value, or the form's text fields (files are not fields here); a field named in
    `lists` as the list of all its values."""
    if sends_json(request):
        try:
            return load_json(await request.body() or b"{}")
        except ValueError as exc:  # also UnicodeDecodeError, and JSONTooDeep
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "input": {}}]
            ) from exc
    async with request.form() as form:
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        fields |= {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in lists if k in form}
        return fields


class FormOrJsonRoute(APIRoute):
    """An APIRoute whose OpenAPI operation shows the body its `FormOrJson` dependency reads."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        for dependency in self.dependant.dependencies:
            if isinstance(dependency.call, FormOrJson):
                self.openapi_extra = {"requestBody": dependency.call.openapi(), **(self.openapi_extra or {})}


def within_rate(name: str, limit_of: Callable[[Settings], int], message: str) -> Callable[..., None]:
    """A dependency: refuse (429 `message`) once the client's network (`ratelimit.client_key`)
    has made `limit_of(settings)` such requests this minute; `name` keeps each count apart.

    The check is a plain function, so FastAPI runs it in the thread pool: the Redis round trip
    never blocks the event loop that every request waits on."""

    def check(request: Request, settings: SettingsDep, client: ClientDep) -> None:
        if not request.app.state.limiter.allow(f"{name}:{client_key(client.ip)}", limit_of(settings), 60):
            raise HTTPException(429, message)

    return check


within_signup_rate = within_rate(
    "ip",
    lambda settings: settings.signup_rate_per_ip,
    "Too many signups from your network just now. Please wait a minute.",
)
within_webhook_rate = within_rate(
    "webhook",
    lambda settings: settings.webhook_rate_per_ip,
    "Too many webhook calls from your network just now. Please wait a minute.",
)
