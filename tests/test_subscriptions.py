"""The double-opt-in state machine and the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlmodel import col, select

from newsletter import onboarding, privacy
from newsletter import subscriptions as subs
from newsletter.db import session_scope
from newsletter.mail.transactional import send_journey_email
from newsletter.models import (
    ConsentEvent,
    DeliveryState,
    JourneyEmail,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.suppression import address_hash
from newsletter.testing import configured_session
from newsletter.tokens import Purpose, TokenError, make_token
from tests.conftest import WebServer, posted_at_once, process_env


@pytest.fixture
def env(configure, db_url):
    return configure(NEWSLETTER_DATABASE_URL=db_url, NEWSLETTER_CONFIRM_COOLDOWN_MINUTES="10")


@pytest.fixture
def queued(monkeypatch):
    """The journey emails queued after commit, as (kind, subscriber id) of the outbox row each
    job was to send, instead of running the jobs (the sending is tested in test_outbox.py)."""
    calls: list[tuple] = []

    def record(settings, job, email_id):
        assert job is send_journey_email
        with session_scope(settings.database_url) as session:
            row = session.get(JourneyEmail, email_id)
        calls.append((row.kind, row.subscriber_id))

    monkeypatch.setattr("newsletter.jobs.run", record)
    return calls


def outbox_rows() -> list[tuple[str, int, DeliveryState]]:
    with configured_session() as session:
        rows = session.exec(select(JourneyEmail).order_by(JourneyEmail.id)).all()
    return [(r.kind, r.subscriber_id, r.state) for r in rows]


def signup(settings, address, interests="", ip="203.0.113.5"):
    with configured_session() as session:
        return subs.request_subscription(
            session, settings, address, interests, subs.Client(ip=ip, user_agent="pytest")
        )


def get(address):
    with configured_session() as session:
        return session.exec(select(Subscriber).where(Subscriber.email_key == address.lower())).one()


def confirm_token(settings, address):
    sub = get(address)
    return make_token(settings, Purpose.confirm, sub.token_key, sub.token_version)


def test_signup_creates_pending_and_queues_one_confirmation(env, queued):
    signup(env, "Ada.Lovelace@Example.ORG", "graph neural networks")
    sub = get("Ada.Lovelace@example.org")
    assert sub.status is SubscriberStatus.pending
    assert sub.email == "Ada.Lovelace@example.org"  # domain lower-cased, local part kept
    assert sub.interests == "graph neural networks"
    assert queued == [("confirm", sub.id)]
    assert outbox_rows() == [("confirm", sub.id, DeliveryState.pending)]  # written with the signup


def test_case_variants_are_one_subscriber_and_cooldown_limits_mail(env, queued):
    signup(env, "ada@example.org")
    signup(env, "ADA@example.org")
    signup(env, "  ada@EXAMPLE.org ")
    with configured_session() as session:
        assert len(session.exec(select(Subscriber)).all()) == 1
    assert len(queued) == 1  # one email per address per cooldown


def test_lookalike_letters_are_different_readers_case_variants_of_them_one(env, queued):
    """The key was case-folded, which merges letters as well as cases: a stranger's signup as
    the ligature "ﬁona@" took fiona@'s place (her signups then mailed the lookalike address),
    and "straße@" was "strasse@"."""
    for address in ("ﬁona@example.org", "fiona@example.org", "Straße@example.org", "strasse@example.org"):
        signup(env, address)
    signup(env, "STRAẞE@example.org")  # the capital sharp s: a case variant of Straße
    with configured_session() as session:
        emails = sorted(s.email for s in session.exec(select(Subscriber)))
    assert emails == sorted(
        ["ﬁona@example.org", "fiona@example.org", "Straße@example.org", "strasse@example.org"]
    )
    assert [kind for kind, _ in queued] == ["confirm"] * 4


def confirmed(settings, address) -> Subscriber:
    signup(settings, address)
    with configured_session() as session:
        subs.confirm_subscription(session, settings, confirm_token(settings, address))
    return get(address)


@contextmanager
def served(settings, tmp_path) -> Iterator[str]:
    """A real uvicorn process on the test's database; its URL."""
    env = process_env(
        NEWSLETTER_DATABASE_URL=settings.database_url, NEWSLETTER_OUTBOX_DIR=str(settings.outbox_dir)
    )
    web = WebServer(env, tmp_path / "web.log")
    try:
        yield web.url
    finally:
        web.stop()


def test_confirm_is_single_use_and_sends_welcome(env, queued):
    signup(env, "ada@example.org")
    token = confirm_token(env, "ada@example.org")
    with configured_session() as session:
        subs.confirm_subscription(session, env, token, subs.Client(ip="198.51.100.1"))
    assert get("ada@example.org").status is SubscriberStatus.confirmed
    assert queued[-1][0] == "welcome"
    with pytest.raises(TokenError) as err, configured_session() as session:
        subs.confirm_subscription(session, env, token)
    assert err.value.reason == "used"


def test_two_presses_of_confirm_at_once_confirm_once(env, queued, monkeypatch):
    """A double click: both presses read "pending" before either wrote, and two welcome emails
    and two "confirmed" consent rows were the result (SQLite and PostgreSQL alike). The presses
    are held side by side here, after the point where each used to decide."""
    import contextlib
    import threading

    signup(env, "ada@example.org")
    token = confirm_token(env, "ada@example.org")
    side_by_side = threading.Barrier(2)
    apply_likes = onboarding.apply_pending_likes

    def held(session, sub):
        with contextlib.suppress(threading.BrokenBarrierError):
            side_by_side.wait(timeout=2)  # the other press gets here too only if it also passed
        return apply_likes(session, sub)

    monkeypatch.setattr(onboarding, "apply_pending_likes", held)
    outcomes: list[str] = []

    def press() -> None:
        try:
            with configured_session() as session:
                subs.confirm_subscription(session, env, token)
            outcomes.append("confirmed")
        except TokenError as exc:
            outcomes.append(exc.reason)

    presses = [threading.Thread(target=press) for _ in range(2)]
    for p in presses:
        p.start()
    for p in presses:
        p.join()
    assert sorted(outcomes) == ["confirmed", "used"]
    assert [kind for kind, _ in queued].count("welcome") == 1
    with configured_session() as session:
        events = session.exec(select(ConsentEvent.event)).all()
    assert events.count("confirmed") == 1


def test_confirm_refuses_forged_expired_and_wrong_purpose(env, queued, monkeypatch):
    signup(env, "ada@example.org")
    sub = get("ada@example.org")
    good = make_token(env, Purpose.confirm, sub.token_key, sub.token_version)
    cases = {
        "forged": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "forged-purpose": make_token(env, Purpose.unsubscribe, sub.token_key, sub.token_version),
    }
    for token in cases.values():
        with pytest.raises(TokenError) as err, configured_session() as session:
            subs.confirm_subscription(session, env, token)
        assert err.value.reason == "forged"
    monkeypatch.setattr(env, "confirm_token_hours", 0)
    with pytest.raises(TokenError) as err, configured_session() as session:
        import time

        time.sleep(1.1)
        subs.confirm_subscription(session, env, good)
    assert err.value.reason == "expired"
    assert get("ada@example.org").status is SubscriberStatus.pending


def test_resignup_of_confirmed_address_changes_nothing(env, queued):
    signup(env, "ada@example.org", "robots")
    with configured_session() as session:
        subs.confirm_subscription(session, env, confirm_token(env, "ada@example.org"))
    signup(env, "ada@example.org", "attacker's interests")
    assert queued[-1][0] == "welcome"  # within the cooldown: no mail
    with configured_session() as session:
        session.get(Subscriber, get("ada@example.org").id).confirm_sent_at -= timedelta(hours=1)
    signup(env, "ada@example.org", "attacker's interests")
    sub = get("ada@example.org")
    assert sub.status is SubscriberStatus.confirmed
    assert sub.interests == "robots"
    assert queued[-1][0] == "already_subscribed"


def test_unsubscribe_is_idempotent_and_resubscribe_needs_fresh_opt_in(env, queued):
    signup(env, "ada@example.org")
    with configured_session() as session:
        subs.confirm_subscription(session, env, confirm_token(env, "ada@example.org"))
    old_prefs = make_token(
        env, Purpose.preferences, get("ada@example.org").token_key, get("ada@example.org").token_version
    )
    with configured_session() as session:
        sub = session.get(Subscriber, get("ada@example.org").id)
        assert subs.unsubscribe(session, sub) is True
        assert subs.unsubscribe(session, sub) is False
    assert get("ada@example.org").status is SubscriberStatus.unsubscribed
    # A later signup does not reactivate: it goes back to pending and needs a new confirmation.
    with configured_session() as session:
        session.get(Subscriber, get("ada@example.org").id).confirm_sent_at -= timedelta(hours=1)
    signup(env, "ada@example.org")
    assert get("ada@example.org").status is SubscriberStatus.pending
    assert queued[-1][0] == "confirm"
    with configured_session() as session:  # anyone can sign up: the owner's links live on…
        subs.subscriber_for_token(session, env, Purpose.preferences, old_prefs)
    with configured_session() as session:
        subs.confirm_subscription(session, env, confirm_token(env, "ada@example.org"))
    with pytest.raises(TokenError), configured_session() as session:  # …until it is confirmed
        subs.subscriber_for_token(session, env, Purpose.preferences, old_prefs)


def test_one_click_unsubscribes_at_once_record_one_consent_event(env, queued, tmp_path):
    """Six one-click POSTs at once (a mail client retrying, a scanner, the reader), on a real
    server: each read "confirmed", so five or six `unsubscribed:one-click` rows went into the
    consent log and each wrote its own unsubscribed_at. Now one moves the reader, by a
    compare-and-set on the status: one consent row, and the first time stays."""
    sub = confirmed(env, "ada@example.org")
    leave = f"/unsubscribe/{make_token(env, Purpose.unsubscribe, sub.token_key, sub.token_version)}"
    with served(env, tmp_path) as url:
        answers = posted_at_once(url, [leave] * 6, data={"List-Unsubscribe": "One-Click"})
        left_at = get("ada@example.org").unsubscribed_at
        answers += posted_at_once(url, [leave], data={"List-Unsubscribe": "One-Click"})
    assert [a.status_code for a in answers] == [200] * 7
    with configured_session() as session:
        events = session.exec(select(ConsentEvent.event).order_by(col(ConsentEvent.id))).all()
    assert events == ["signup_requested", "confirmed", "unsubscribed:one-click"]
    ada = get("ada@example.org")
    assert ada.status is SubscriberStatus.unsubscribed and ada.unsubscribed_at == left_at is not None


def test_consent_record_keeps_when_where_and_wording(env, queued):
    signup(env, "ada@example.org", ip="192.0.2.44")
    with configured_session() as session:
        subs.confirm_subscription(
            session,
            env,
            confirm_token(env, "ada@example.org"),
            subs.Client(ip="192.0.2.45", user_agent="Firefox"),
        )
    with configured_session() as session:
        events = session.exec(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert [e.event for e in events] == ["signup_requested", "confirmed"]
    assert events[0].ip == "192.0.2.44" and events[1].user_agent == "Firefox"
    assert events[1].wording == subs.CONSENT_WORDING


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "not-an-address",
        "a@b",
        "ada@example.org\r\nBcc: victim@example.org",
        "ada@example.org\nX-Injected: 1",
        "x" * 300 + "@example.org",
        "ada@@example.org",
        "<ada@example.org>",
        "ada@example.org, bob@example.org",
    ],
)
def test_bad_addresses_are_refused_and_nothing_is_stored(env, queued, bad):
    with pytest.raises(subs.InvalidInput):
        signup(env, bad)
    with configured_session() as session:
        assert session.exec(select(Subscriber)).all() == []
    assert queued == []


def test_oversize_interests_are_refused(env, queued):
    with pytest.raises(subs.InvalidInput):
        signup(env, "ada@example.org", "x" * 5000)
    assert queued == []


def test_state_machine_refuses_unlisted_moves():
    sub = Subscriber(email="a@example.org", email_key="a@example.org", status=SubscriberStatus.unsubscribed)
    with pytest.raises(ValueError):
        subs.transition(sub, SubscriberStatus.confirmed)  # never without a fresh opt-in


def test_erase_removes_every_trace(env, queued):
    signup(env, "ada@example.org")
    with configured_session() as session:
        privacy.erase_subscriber(session, env, session.get(Subscriber, get("ada@example.org").id))
    with configured_session() as session:
        assert session.exec(select(Subscriber)).all() == []
        assert session.exec(select(ConsentEvent)).all() == []
        assert session.exec(select(JourneyEmail)).all() == []


def test_erase_pressed_at_once_answers_erased_every_time(env, queued, tmp_path):
    """A double-submitted "Erase me", on a real server: six POSTs at once answered one 200
    and five 500s (each read the reader and the suppression list, then each deleted and
    inserted; the second suppression insert broke the unique hash). Every one now gets the
    first one's answer, and so does a press that comes once the erasure is committed (it was a
    410 "link no longer valid"); of the reader only the suppression entry is left."""
    sub = confirmed(env, "ada@example.org")
    erase = f"/preferences/{make_token(env, Purpose.preferences, sub.token_key, sub.token_version)}/erase"
    form = {"data": {"confirm": "yes"}, "headers": {"accept": "application/json"}}
    with served(env, tmp_path) as url:
        answers = posted_at_once(url, [erase] * 6, **form)
        answers += posted_at_once(url, [erase], **form)  # a press after the others were done
    assert [a.status_code for a in answers] == [200] * 7
    assert all(a.json() == {"status": "erased", "message": answers[0].json()["message"]} for a in answers)
    with configured_session() as session:
        assert session.exec(select(Subscriber)).all() == []
        assert session.exec(select(ConsentEvent)).all() == []
        assert session.exec(select(JourneyEmail)).all() == []
        assert session.exec(select(Suppression.address_hash)).all() == [address_hash("ada@example.org")]


def test_a_signup_that_rolls_back_leaves_no_email_and_queues_nothing(env, queued):
    with pytest.raises(RuntimeError), configured_session() as session:
        subs.request_subscription(session, env, "ada@example.org", "")
        raise RuntimeError("the request failed after the signup")
    assert outbox_rows() == [] and queued == []


def test_an_unsent_email_is_queued_again_not_written_twice(env, queued):
    """A signup whose email could not be queued resets the cooldown; the next signup queues
    the same outbox row again (one email at most), and once it is sent a new one is written."""
    signup(env, "ada@example.org")
    sub_id = get("ada@example.org").id
    subs._forget_cooldown(env, sub_id)  # what on_failure does when the broker is down
    signup(env, "ada@example.org")
    assert outbox_rows() == [("confirm", sub_id, DeliveryState.pending)]
    assert queued == [("confirm", sub_id)] * 2
    with configured_session() as session:
        [email_id] = session.exec(select(JourneyEmail.id)).all()
    assert send_journey_email(env, email_id) == "sent"  # into the outbox folder
    with configured_session() as session:
        session.get(Subscriber, sub_id).confirm_sent_at -= timedelta(hours=1)
    signup(env, "ada@example.org")
    assert outbox_rows() == [
        ("confirm", sub_id, DeliveryState.sent),
        ("confirm", sub_id, DeliveryState.pending),
    ]


@pytest.mark.parametrize("gone_as", ["unsubscribed", "bounced"])
def test_a_strangers_signup_leaves_an_inactive_readers_profile_alone(env, queued, gone_as):
    """L11: signing up an unsubscribed or bounced address (anyone can) used to wipe the learned
    profile, replace the interests with the requester's text and revoke the owner's links. Now
    nothing of the owner's changes until the confirmation link is followed; the requested
    interests wait beside the profile and apply once the mailbox owner confirms."""
    signup(env, "ada@example.org", "robots")
    with configured_session() as session:
        subs.confirm_subscription(session, env, confirm_token(env, "ada@example.org"))
    with configured_session() as session:
        sub = session.get(Subscriber, get("ada@example.org").id)
        sub.profile = {"terms": {"robot": 2.0}, "liked": ["A robot paper"], "votes": 3}
        if gone_as == "bounced":
            subs.mark_bounced(session, sub, "550 mailbox full")
        else:
            subs.unsubscribe(session, sub)
        sub.confirm_sent_at -= timedelta(hours=1)
    owner = get("ada@example.org")
    owners_prefs = make_token(env, Purpose.preferences, owner.token_key, owner.token_version)

    signup(env, "ADA@example.org", "a stranger's interests", ip="198.51.100.66")
    after = get("ada@example.org")
    assert after.profile == owner.profile and after.interests == "robots"
    assert (after.email, after.token_key, after.token_version) == (
        owner.email,
        owner.token_key,
        owner.token_version,
    )
    assert after.unsubscribed_at == owner.unsubscribed_at
    with configured_session() as session:  # the owner's links still work
        assert subs.subscriber_for_token(session, env, Purpose.preferences, owners_prefs)[0].id == owner.id
    assert queued[-1][0] == "confirm"

    with configured_session() as session:  # the mailbox owner follows the link
        subs.confirm_subscription(session, env, confirm_token(env, "ada@example.org"))
    confirmed = get("ada@example.org")
    assert confirmed.status is SubscriberStatus.confirmed
    assert confirmed.interests == "a stranger's interests" and confirmed.profile == owner.profile
    with pytest.raises(TokenError), configured_session() as session:  # confirming renews the links
        subs.subscriber_for_token(session, env, Purpose.preferences, owners_prefs)


def consent_rows(address: str) -> list[ConsentEvent]:
    with configured_session() as session:
        return session.exec(select(ConsentEvent).where(ConsentEvent.email_key == address)).all()


def test_at_most_n_confirmations_per_address_a_day_and_no_record_of_attempts_that_did_nothing(env, queued):
    """M6: the cooldown alone let a cross-site form mail one address every 10 minutes, 144 a
    day, each attempt adding a consent row with the attacker's IP. Now at most
    NEWSLETTER_CONFIRMATIONS_PER_DAY emails per address in 24 h, and an attempt that sends
    nothing (cooldown or cap) writes nothing."""
    settings = env.model_copy(update={"confirm_cooldown_minutes": 0, "confirmations_per_day": 3})
    outcomes = [signup(settings, "ada@example.org", ip=f"198.51.100.{i}") for i in range(6)]
    assert len(queued) == 3 and outcomes[3:] == ["held"] * 3
    rows = consent_rows("ada@example.org")
    assert [r.event for r in rows] == ["signup_requested"] * 3
    assert [r.ip for r in rows] == ["198.51.100.0", "198.51.100.1", "198.51.100.2"]

    with configured_session() as session:  # a day later the address may be mailed again
        for row in session.exec(select(ConsentEvent)):
            row.at -= timedelta(hours=24, minutes=1)
    assert signup(settings, "ada@example.org") == "pending-again"
    assert len(queued) == 4

    signup(env, "bob@example.org", "robots", ip="192.0.2.1")  # the 10-minute cooldown
    assert signup(env, "bob@example.org", "attacker", ip="192.0.2.66") == "held"
    assert [r.ip for r in consent_rows("bob@example.org")] == ["192.0.2.1"]
    assert get("bob@example.org").pending_interests is None  # a held attempt changes nothing


def test_export_holds_everything_stored_about_the_reader(env, queued):
    """L10: the export lacked the ledger's error, SMTP code, Message-ID and the papers sent,
    the votes' times, and confirm_sent_at / updated_at."""
    from newsletter.models import Delivery, DeliveryState, Issue, Paper, Vote

    signup(env, "ada@example.org", "robots")
    with configured_session() as session:
        subs.confirm_subscription(session, env, confirm_token(env, "ada@example.org"))
    with configured_session() as session:
        paper = Paper(title_key="a paper", title="A paper")
        issue = Issue(period="2026-W48", title="Issue")
        session.add_all([paper, issue])
        session.flush()
        sub_id = get("ada@example.org").id
        session.add(
            Delivery(
                issue_id=issue.id,
                subscriber_id=sub_id,
                state=DeliveryState.failed,
                smtp_code=550,
                error="550 5.1.1 no such user",
                message_id="<1.2.3.digest@news.example.org>",
                paper_ids=[paper.id],
            )
        )
        session.add(Vote(issue_id=issue.id, paper_id=paper.id, subscriber_id=sub_id, direction=1))
    with configured_session() as session:
        data = privacy.export_subscriber(session, session.get(Subscriber, sub_id))
    assert data["confirm_sent_at"] and data["updated_at"] and data["pending_interests"] is None
    [delivery] = data["deliveries"]
    assert delivery["smtp_code"] == 550 and delivery["error"] == "550 5.1.1 no such user"
    assert delivery["message_id"] == "<1.2.3.digest@news.example.org>" and delivery["paper_ids"] == [paper.id]
    [vote] = data["votes"]
    assert vote["at"] and vote["direction"] == 1
