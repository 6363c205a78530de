"""The one-off emails of the subscriber journey: confirm, welcome, already subscribed."""

from __future__ import annotations

import logging
from datetime import timedelta

from newsletter import links
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.logs import event
from newsletter.mail.compose import finish_message, list_headers
from newsletter.mail.message import Envelope, new_message_id
from newsletter.mail.render import render_email
from newsletter.mail.senders import PermanentSendError, open_sender
from newsletter.models import Frequency, Subscriber, SubscriberStatus, utcnow

log = logging.getLogger("newsletter.mail")

# Which state a subscriber must still be in for the email to make sense when it is sent.
REQUIRED_STATE = {
    "confirm": SubscriberStatus.pending,
    "welcome": SubscriberStatus.confirmed,
    "already_subscribed": SubscriberStatus.confirmed,
}
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def next_digest_text(settings: Settings, sub: Subscriber) -> str:
    if sub.frequency is Frequency.daily:
        return f"tomorrow at {settings.digest_hour:02d}:00 {settings.timezone}"
    return f"on {WEEKDAYS[settings.digest_weekday]} at {settings.digest_hour:02d}:00 {settings.timezone}"


def transactional_message(settings: Settings, kind: str, sub: Subscriber) -> bytes:
    context = {
        "email": sub.email,
        "base_url": settings.base_url.rstrip("/"),
        "interests": sub.interests,
        "confirm_hours": settings.confirm_token_hours,
        "next_digest": next_digest_text(settings, sub),
    }
    headers = {"Auto-Submitted": "auto-generated"}
    if kind == "confirm":
        context["confirm_url"] = links.confirm_url(settings, sub)
    else:
        context["preferences_url"] = links.preferences_url(settings, sub)
        context["unsubscribe_url"] = links.unsubscribe_url(settings, sub)
        headers.update(list_headers(settings, sub))
    rendered = render_email(kind, context)
    env = Envelope(
        mail_from=settings.mail_from,
        to=sub.email,
        subject=rendered.subject,
        message_id=new_message_id(settings.mail_domain, kind),  # no subscriber id in it (L13)
        headers=headers,
    )
    return finish_message(settings, env, rendered.text, rendered.html)


def send_transactional(settings: Settings, kind: str, subscriber_id: int) -> str:
    """Send one journey email if it still makes sense; transient errors propagate (retry)."""
    with session_scope(settings.database_url) as session:
        sub = session.get(Subscriber, subscriber_id)
        if sub is None or sub.status is not REQUIRED_STATE[kind]:
            return "skipped"
        if (
            kind == "confirm"
            and sub.confirm_sent_at
            and utcnow() - sub.confirm_sent_at > timedelta(hours=settings.confirm_token_hours)
        ):
            return "skipped"  # a queue backlog older than the link itself: not worth sending
        message = transactional_message(settings, kind, sub)
        to = sub.email
    sender = open_sender(settings)
    try:
        sender.send(to, message)
    except PermanentSendError as exc:
        event(
            log,
            "mail.refused",
            logging.WARNING,
            kind=kind,
            subscriber_id=subscriber_id,
            smtp_code=exc.code,
            error=str(exc),
        )
        return "refused"
    finally:
        sender.close()
    event(log, "mail.sent", kind=kind, subscriber_id=subscriber_id)
    return "sent"
