"""The double-opt-in state machine: subscribe, confirm, preferences, unsubscribe, erase.

No HTTP here: the web app and the CLI parse input, call these, and commit. Journey emails are
outbox rows (`outbox.py`) written in the caller's transaction, their jobs queued after it commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from newsletter import jobs, onboarding, outbox, suppression, validation
from newsletter.config import Settings
from newsletter.db import insert_ignore, rows_written, session_scope
from newsletter.logs import event as log_event
from newsletter.mail.transactional import send_journey_email
from newsletter.models import (
    LEFT,
    ConsentEvent,
    Subscriber,
    SubscriberStatus,
    saved_id,
    table_of,
    utcnow,
)
from newsletter.preferences import apply_preferences
from newsletter.tokens import Purpose, TokenData, TokenError, TokenReason, read_token
from newsletter.validation import InvalidInput, clean_interests, normalise_email

log = logging.getLogger("newsletter.subscriptions")
CONSENT_WORDING = (
    "v1: Send me the weekly Paper Digest of trending research papers, ranked for my interests. "
    "I can change my preferences or unsubscribe with one click from any email."
)

# Which moves are allowed, in one place (Mailman keeps its workflow states the same way).
TRANSITIONS: dict[SubscriberStatus, set[SubscriberStatus]] = {
    SubscriberStatus.pending: {SubscriberStatus.confirmed, SubscriberStatus.unsubscribed},
    SubscriberStatus.confirmed: {SubscriberStatus.unsubscribed, SubscriberStatus.bounced},
    SubscriberStatus.unsubscribed: {SubscriberStatus.pending},
    SubscriberStatus.bounced: {SubscriberStatus.pending, SubscriberStatus.unsubscribed},
}


@dataclass(frozen=True)
class Client:
    """Where a request came from, for the consent record and rate limits."""

    ip: str | None = None
    user_agent: str | None = None


def transition(sub: Subscriber, new: SubscriberStatus) -> None:
    """Move `sub` to `new`, refusing moves the state machine does not allow. A (re)confirmed
    reader has not left, and their bounce count starts afresh: the mailbox just proved itself."""
    if new not in TRANSITIONS[sub.status]:
        raise ValueError(f"cannot move a {sub.status.value} subscriber to {new.value}")
    sub.status, sub.updated_at = new, utcnow()
    if new is SubscriberStatus.confirmed:
        sub.unsubscribed_at, sub.bounce_score, sub.bounce_score_at = None, 0.0, None


def record_consent(
    session: Session, sub: Subscriber, event: str, client: Client, wording: str | None = None
) -> None:
    """Append a consent row (and log the event with the subscriber's id, never the address)."""
    # No client address in the log: logs outlive an erasure; the consent row keeps it instead.
    log_event(log, f"subscriber.{event}", subscriber_id=sub.id)
    session.add(
        ConsentEvent(
            subscriber_id=sub.id,
            email_key=sub.email_key,
            event=event,
            ip=(client.ip or None) and client.ip[:64],
            user_agent=(client.user_agent or None) and client.user_agent[:512],
            wording=wording,
        )
    )


def find_by_email(session: Session, email: str) -> Subscriber | None:
    _, key = normalise_email(email)
    return session.exec(select(Subscriber).where(Subscriber.email_key == key)).first()


def _mailed_enough(session: Session, sub: Subscriber, settings: Settings) -> bool:
    """Whether the address had its signup email within the cooldown, or its day's allowance.

    A `signup_requested` consent row is written exactly when such an email is queued, so the
    rows of the last 24 hours count the emails (one whose queueing failed counts too)."""
    cooldown = timedelta(minutes=settings.confirm_cooldown_minutes)
    if sub.confirm_sent_at is not None and utcnow() - sub.confirm_sent_at < cooldown:
        return True
    last_day = select(func.count()).where(
        ConsentEvent.email_key == sub.email_key,
        ConsentEvent.event == "signup_requested",
        ConsentEvent.at > utcnow() - timedelta(hours=24),
    )
    return session.exec(last_day).one() >= settings.confirmations_per_day


def request_subscription(
    session: Session,
    settings: Settings,
    email: str,
    interests: str | None,
    client: Client = Client(),
    timezone: str | None = None,
    likes: list[int] | None = None,
) -> str:
    """Handle a signup for any address state; return what happened (never shown to the user).

    New, unsubscribed and bounced addresses become pending and get a confirmation email; a
    pending address gets its link again; a confirmed one a "you're already subscribed" note. The
    requester may not own the address: a known subscriber's interests, profile and links stay
    (interests asked for wait in `pending_interests` until the link is followed). At most one
    email per cooldown and `confirmations_per_day` in 24 hours; past that, nothing is sent,
    changed or recorded ("held"). `timezone` (the browser's) is kept for a new address only,
    and only if the IANA database knows it; otherwise the reader follows the list's zone.
    `likes` (paper ids the signup ticked, checked by `onboarding.checked_picks`) wait in
    `pending_likes` like the interests.
    """
    address, key = normalise_email(email)
    text = clean_interests(interests)
    # Simultaneous signups of one address take turns: INSERT … ON CONFLICT DO NOTHING (no
    # unique violation, no 500) and then the row locked until commit, so the cooldown holds.
    zone = timezone if timezone and validation.known_zone(timezone) else None
    new = Subscriber(
        email=address,
        email_key=key,
        interests=text,
        max_papers=settings.default_max_papers,
        timezone=zone,
        pending_likes=likes or None,
    ).model_dump(exclude={"id"})
    statement = insert_ignore(table_of(Subscriber), session.get_bind().dialect.name).values(**new)
    created = rows_written(session, statement) == 1
    sub = _locked_by_key(session, key)
    if not created and _mailed_enough(session, sub, settings):
        return "held"  # no email goes out, so nothing changes and nothing is recorded
    if created:
        outcome, kind = "created", "confirm"
    elif sub.status is SubscriberStatus.confirmed:
        outcome, kind = "already-confirmed", "already_subscribed"
    else:
        _ask_again(sub, text, likes)
        outcome, kind = "pending-again", "confirm"
    record_consent(session, sub, "signup_requested", client, CONSENT_WORDING)
    sub.confirm_sent_at = utcnow()
    queue_journey_email(
        session, settings, sub, kind, on_failure=lambda: _forget_cooldown(settings, saved_id(sub))
    )
    return outcome


def queue_journey_email(
    session: Session,
    settings: Settings,
    sub: Subscriber,
    kind: str,
    on_failure: Callable[[], object] | None = None,
) -> int:
    """Write the `kind` email to the outbox in this transaction and send it right after commit.

    If that subscriber's `kind` email is still unsent, that row is queued again instead of a
    second one. Returns the row's id.
    """
    first_look = utcnow() + timedelta(seconds=settings.journey_requeue_after_seconds)
    email_id = outbox.add_email(session.connection(), saved_id(sub), kind, first_look)
    jobs.enqueue(session, settings, send_journey_email, email_id, on_failure=on_failure)
    return email_id


def _ask_again(sub: Subscriber, interests: str, likes: list[int] | None) -> None:
    """A signup of a known address that is not confirmed: it waits for a confirmation again.

    Whoever asked may not own the address, so the owner's interests, learned profile and links
    stay as they are; the interests asked for apply once the link is followed."""
    if sub.status is not SubscriberStatus.pending:
        transition(sub, SubscriberStatus.pending)
    if interests:
        sub.pending_interests = interests
    if likes:
        sub.pending_likes = likes


def import_subscriber(
    session: Session,
    settings: Settings,
    email: str,
    *,
    interests: str,
    frequency: str,
    max_papers: int,
    client: Client = Client(),
) -> Subscriber:
    """An operator adds an address whose consent they already hold: confirmed at once, no
    email, and a consent row saying it was imported (the double opt-in happened elsewhere).
    An erased (suppressed) address is refused with an OperatorError."""
    address, key = normalise_email(email)
    suppression.refuse_suppressed(session, key, email)
    sub = session.exec(select(Subscriber).where(Subscriber.email_key == key)).first()
    if sub is None:
        sub = Subscriber(email=address, email_key=key, max_papers=settings.default_max_papers)
        session.add(sub)
    elif sub.status in LEFT:
        transition(sub, SubscriberStatus.pending)
        sub.token_version += 1  # links from the previous subscription die here
    apply_preferences(sub, interests=interests, frequency=frequency, max_papers=max_papers)
    sub.pending_interests = None  # the operator's interests are the ones
    if sub.status is SubscriberStatus.pending:
        transition(sub, SubscriberStatus.confirmed)
        sub.confirmed_at = utcnow()
        session.flush()
        record_consent(session, sub, "imported", client)
    return sub


def _forget_cooldown(settings: Settings, subscriber_id: int) -> None:
    """The email could not be queued (broker down) or, in-process, sent (relay down): let the
    next signup attempt send it at once instead of after the cooldown. Its outbox row stays
    unsent, so that attempt queues the same row again (never a second email); with a broker,
    beat's sweep sends it anyway, and without one this retry is the only trigger."""
    try:
        with session_scope(settings.database_url) as session:
            sub = session.get(Subscriber, subscriber_id)
            if sub is not None:
                sub.confirm_sent_at = None
    except Exception:  # noqa: BLE001 - best effort; the cooldown then simply runs out
        log.exception("subscriber.cooldown_not_reset", extra={"subscriber_id": subscriber_id})


def _locked_by_key(session: Session, key: str) -> Subscriber:
    """The subscriber with this lookup key (the signup's INSERT made sure there is one),
    row-locked for this transaction (PostgreSQL)."""
    stmt = (
        select(Subscriber)
        .where(Subscriber.email_key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(stmt).one()


def subscriber_for_token(
    session: Session, settings: Settings, purpose: Purpose, token: str
) -> tuple[Subscriber, dict[str, Any]]:
    """The subscriber a link names, or TokenError (forged, expired, used, gone)."""
    data = read_token(settings, purpose, token)
    sub = _named_by(session, data)
    if sub is None:
        raise TokenError(TokenReason.forged if purpose is Purpose.confirm else TokenReason.gone)
    # Unsubscribing stays possible with any link we ever sent; everything else needs a live one.
    if purpose is not Purpose.unsubscribe and data.version != sub.token_version:
        raise TokenError(TokenReason.used)
    return sub, data.extra


def _named_by(session: Session, data: TokenData) -> Subscriber | None:
    """The subscriber whose token_key a valid link carries. A link signed before revision 0002
    names a row id instead, and counts only for a row that existed when it was signed: a later
    row with the same id is someone else. (Such links expire `link_token_days` after it.)"""
    if isinstance(data.subscriber_key, str):
        by_key = select(Subscriber).where(Subscriber.token_key == data.subscriber_key)
        return session.exec(by_key).first()
    sub = session.get(Subscriber, data.subscriber_key)
    if sub is not None and sub.created_at >= data.signed_at + timedelta(seconds=1):
        return None  # the token's time has whole seconds only
    return sub


def pending_subscriber(session: Session, settings: Settings, token: str) -> Subscriber:
    """The subscriber a confirmation link names, still pending; TokenError (used) once confirmed."""
    sub, _ = subscriber_for_token(session, settings, Purpose.confirm, token)
    if sub.status is not SubscriberStatus.pending:
        raise TokenError(TokenReason.used)
    return sub


def _spend_confirmation(session: Session, data: TokenData) -> bool:
    """Move the pending reader's token version on from the link's, if it still is: True for one
    of any number of presses (read first, both saw "pending": two welcome emails went out)."""
    named = col(Subscriber.token_key) == data.subscriber_key
    if not isinstance(data.subscriber_key, str):  # a link signed before revision 0002: a row id
        named = col(Subscriber.id) == data.subscriber_key
    spend = (
        update(Subscriber)
        .where(named, col(Subscriber.token_version) == data.version)
        .where(col(Subscriber.status) == SubscriberStatus.pending)
        .values(token_version=data.version + 1)
        .execution_options(synchronize_session=False)
    )
    return rows_written(session, spend) == 1


def confirm_subscription(
    session: Session, settings: Settings, token: str, client: Client = Client()
) -> Subscriber:
    """Confirm a pending subscriber (single-use) and queue the welcome email. The link is spent
    first, by compare-and-set: of two presses at once one confirms, the other gets "used"."""
    data = read_token(settings, Purpose.confirm, token)
    if not _spend_confirmation(session, data):
        pending_subscriber(session, settings, token)  # the reason: forged, used …
        raise TokenError(TokenReason.used)  # spent by a press a moment ago
    session.expire_all()  # the row was changed behind the ORM's back
    sub = _named_by(session, data)
    if sub is None:  # a link from before revision 0002 naming a newer row: rolled back with it
        raise TokenError(TokenReason.forged)
    was_resubscribe = sub.confirmed_at is not None
    transition(sub, SubscriberStatus.confirmed)
    if sub.pending_interests is not None:  # what the signup being confirmed asked for
        sub.interests, sub.pending_interests = sub.pending_interests, None
    onboarding.apply_pending_likes(session, sub)  # and the papers it ticked
    suppression.lift(session, sub.email_key)  # an erased person who opted in again
    sub.confirmed_at = utcnow()
    record_consent(session, sub, "resubscribed" if was_resubscribe else "confirmed", client, CONSENT_WORDING)
    queue_journey_email(session, settings, sub, "welcome")
    return sub


def unsubscribe(session: Session, sub: Subscriber, client: Client = Client(), via: str = "link") -> bool:
    """Unsubscribe (a bounced reader stays bounced); idempotent. Returns True if the state changed:
    for one of any number of requests at once, by compare-and-set (read first, each saw
    "confirmed", wrote its own consent row and moved `unsubscribed_at` on)."""
    now = utcnow()
    leave = (
        update(Subscriber)
        .where(col(Subscriber.id) == sub.id)
        .where(col(Subscriber.status).in_((SubscriberStatus.pending, SubscriberStatus.confirmed)))
        # also cancels a signup still waiting for its link
        .values(status=SubscriberStatus.unsubscribed, updated_at=now, unsubscribed_at=now)
        .values(pending_interests=None, pending_likes=None)
        .execution_options(synchronize_session=False)
    )
    changed = rows_written(session, leave) == 1
    session.refresh(sub)  # as it is now, whichever request moved it
    if changed:
        record_consent(session, sub, f"unsubscribed:{via}", client)
    return changed


def update_preferences(
    session: Session,
    sub: Subscriber,
    *,
    interests: str | None,
    frequency: str | None,
    max_papers: int | str | None,
    schedule: tuple[int | str | None, str | None] | None = None,
    client: Client = Client(),
) -> Subscriber:
    """A confirmed subscriber changes interests, frequency, digest size or schedule."""
    if sub.status is not SubscriberStatus.confirmed:
        raise InvalidInput("This subscription is not active; sign up again to change it.")
    apply_preferences(sub, interests=interests, frequency=frequency, max_papers=max_papers, schedule=schedule)
    record_consent(session, sub, "preferences_changed", client)
    session.add(sub)
    return sub


def mark_bounced(session: Session, sub: Subscriber, reason: str = "") -> bool:
    """A hard bounce: stop sending. Returns True if the state changed."""
    if sub.status is not SubscriberStatus.confirmed:
        return False
    transition(sub, SubscriberStatus.bounced)
    record_consent(session, sub, "bounced", Client(), reason[:500] or None)
    return True
