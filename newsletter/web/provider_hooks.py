"""Mail providers' bounce and complaint webhooks: Amazon SES (via SNS), Mailgun, Postmark.

Each route is off (the same 404 as an unknown path) until its settings are set; then it is
rate-limited like the generic webhook, authenticated (SNS and Mailgun sign the body, Postmark
sends basic auth), read by its adapter in `newsletter.bounces.providers`, and recorded. The answer
never depends on whether an address is ours: 200 for what was read (events recorded or ignored,
so the provider does not retry), 400 for a body that is not the provider's JSON, 403 for a call
that is not the provider's, 503 while the replay store cannot answer (the provider retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from newsletter.bounces.events import record_bounce
from newsletter.bounces.providers import mailgun, postmark, ses
from newsletter.bounces.providers.base import Batch, Malformed, Refused
from newsletter.bounces.providers.replay import Unavailable
from newsletter.config import Settings
from newsletter.logs import event as log_event
from newsletter.web.auth import matches_any
from newsletter.web.deps import SessionDep, SettingsDep, within_webhook_rate

log = logging.getLogger("newsletter.web.provider_hooks")
router = APIRouter()
basic_auth = HTTPBasic(auto_error=False, realm="postmark")


def configured(is_on: Callable[[Settings], bool]) -> Callable[..., None]:
    """A dependency: 404, as for a path that does not exist, unless `is_on(settings)`."""

    def check(settings: SettingsDep) -> None:
        if not is_on(settings):
            raise HTTPException(404)  # the very answer of an unknown path

    return check


def ses_on(settings: Settings) -> bool:
    # On with topics alone: every message is then refused, and the log names the certificate
    # SNS signed it with, for the operator to download (README "Bounces from a mail provider").
    return bool(settings.ses_sns_topic_arns)


def mailgun_on(settings: Settings) -> bool:
    return bool(settings.mailgun_signing_key)


def postmark_on(settings: Settings) -> bool:
    return bool(settings.postmark_webhook_user and settings.postmark_webhook_password)


def postmark_caller(
    settings: SettingsDep, credentials: Annotated[HTTPBasicCredentials | None, Depends(basic_auth)]
) -> None:
    """Refuse (401) a call without the configured basic-auth user and password (both compared
    in constant time, always)."""
    user, password = (credentials.username, credentials.password) if credentials else (None, None)
    good_user = matches_any(user, [settings.postmark_webhook_user or ""])
    good_password = matches_any(password, [settings.postmark_webhook_password or ""])
    if not (good_user and good_password):
        raise HTTPException(
            401, "Postmark webhooks need their basic-auth credentials.", {"WWW-Authenticate": "Basic"}
        )


async def raw_body(request: Request) -> bytes:
    return await request.body()


Body = Annotated[bytes, Depends(raw_body)]


@router.post("/webhooks/ses", dependencies=[Depends(configured(ses_on)), Depends(within_webhook_rate)])
def ses_webhook(body: Body, session: SessionDep, settings: SettingsDep) -> Response:
    """Amazon SNS notifications of SES bounces and complaints, signed by SNS."""
    return _answer(session, settings, "ses", lambda: ses.read(body, settings))


@router.post(
    "/webhooks/mailgun", dependencies=[Depends(configured(mailgun_on)), Depends(within_webhook_rate)]
)
def mailgun_webhook(request: Request, body: Body, session: SessionDep, settings: SettingsDep) -> Response:
    """Mailgun `failed`, `complained` and `unsubscribed` events, signed with the webhook signing key."""
    tokens = request.app.state.webhook_tokens
    return _answer(session, settings, "mailgun", lambda: mailgun.read(body, settings, tokens))


@router.post(
    "/webhooks/postmark",
    dependencies=[Depends(configured(postmark_on)), Depends(within_webhook_rate), Depends(postmark_caller)],
)
def postmark_webhook(body: Body, session: SessionDep, settings: SettingsDep) -> Response:
    """Postmark bounce and spam-complaint webhooks, with the configured basic-auth credentials."""
    return _answer(session, settings, "postmark", lambda: postmark.read(body))


def _answer(session: SessionDep, settings: Settings, source: str, read: Callable[[], Batch]) -> Response:
    try:
        batch = read()
    except Malformed as exc:
        log_event(log, "provider.malformed", logging.WARNING, source=source, detail=str(exc))
        raise HTTPException(400, str(exc)) from exc
    except Refused as exc:
        log_event(log, "provider.refused", logging.WARNING, source=source, reason=str(exc), **exc.details)
        raise HTTPException(403, "This call is not signed by the provider we expect.") from exc
    except Unavailable as exc:
        log_event(log, "provider.unavailable", logging.ERROR, source=source, error=str(exc))
        raise HTTPException(503, "Cannot check this call just now; please retry.") from exc
    for what in batch.ignored:
        log_event(log, "provider.ignored", source=source, event_type=what)
    for bounce in batch.events:
        record_bounce(session, settings, bounce)
    return JSONResponse({"status": "ok", "events": len(batch.events), "ignored": len(batch.ignored)})
