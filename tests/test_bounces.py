"""Bounces after the 250: VERP envelope senders, the inbound endpoint, scoring, what operators see.

Real parts: PostgreSQL, the product's SMTP sender talking to an in-process aiosmtpd server that
records envelopes, `newsletter.bounces.inbound` listening on a real port, smtplib sending it
real bounces from flufl.bounce's corpus (tests/data/dsn/) to the addresses the digest used.
"""

from __future__ import annotations

import re
import smtplib
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter import admin
from newsletter import subscriptions as subs
from newsletter.bounces import inbound
from newsletter.bounces.events import BounceEvent, Effect, record_bounce
from newsletter.bounces.reports import bounce_counts, bounce_events_for
from newsletter.models import ConsentEvent, Delivery, Subscriber, SubscriberStatus, utcnow
from newsletter.papers import sample_feed_path
from newsletter.suppression import suppression_for
from newsletter.testing import configured_session, free_port
from newsletter.tokens import Purpose, make_token
from newsletter.web import create_app
from tests.test_digests import add_subscriber, ingest_sample
from tests.test_security import snapshot

CORPUS = Path(__file__).parent / "data" / "dsn"
READERS = ("ada@example.org", "bob@example.org", "cy@example.org")


@pytest.fixture
def sent(configure, pg_url, smtp_server):
    """Three readers, one digest each through SMTP; the inbound endpoint listening."""
    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port)
    )
    ingest_sample()
    ids = {a: add_subscriber(a, "language models") for a in READERS}
    admin.send_now(settings, "weekly")
    envelopes = {rcpts[0]: mail_from for mail_from, rcpts, _ in box.messages}
    messages = {a: box.parsed(a)[0] for a in READERS}
    inbound_port = free_port()
    controller = inbound.start(settings, "127.0.0.1", inbound_port)
    yield type(
        "Sent",
        (),
        {
            "settings": settings,
            "ids": ids,
            "envelopes": envelopes,
            "messages": messages,
            "port": inbound_port,
        },
    )
    controller.stop()


def deliver(port: int, rcpt: str, raw: bytes, mail_from: str = "") -> None:
    """Hand `raw` to the inbound endpoint as an MTA would (a bounce has the null sender)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail(mail_from, [rcpt], raw)


def list_unsubscribe(msg) -> list[str]:
    """The URIs of a List-Unsubscribe header (RFC 2369: each in angle brackets)."""
    return re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))


def sample(name: str) -> bytes:
    """A corpus file as an MTA puts it on the wire: CRLF line ends."""
    return re.sub(rb"\r?\n", b"\r\n", (CORPUS / name).read_bytes())


def status_of(sub_id: int) -> SubscriberStatus:
    with configured_session() as session:
        return session.get(Subscriber, sub_id).status


def delivery_of(sub_id: int) -> Delivery:
    with configured_session() as session:
        return session.exec(select(Delivery).where(Delivery.subscriber_id == sub_id)).one()


def test_each_message_has_its_own_verp_sender_and_a_mailto_unsubscribe(sent):
    senders = set(sent.envelopes.values())
    assert len(senders) == len(READERS)
    for address, msg in sent.messages.items():
        local, domain = sent.envelopes[address].split("@")
        assert local.startswith("bounces+d") and domain == "news.example.org" and len(local) <= 64
        assert address not in local  # the token names a row, never the address
        assert msg["From"] == sent.settings.mail_from  # the header From is unchanged
        links = list_unsubscribe(msg)
        assert str(msg["List-Unsubscribe"]).startswith("<https://news.example.org/unsubscribe/")
        assert any(link.startswith("mailto:unsubscribe+u") for link in links)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_verp_addresses_do_not_tell_row_ids_and_those_sent_before_still_count(sent):
    """`bounces+d<delivery id in base 36>-…` and `unsubscribe+u<subscriber id>-…` told every
    reader their signup number, and so the list's size and growth. The ids are masked now; an
    address sent before (plain id) and one masked with a rotated-out key are still read."""
    from newsletter.bounces import verp

    def b36(n: int) -> str:
        return verp._b36(n)

    for address, msg in sent.messages.items():
        sub_id, delivery = sent.ids[address], delivery_of(sent.ids[address])
        assert not sent.envelopes[address].startswith(
            (f"bounces+d{b36(delivery.id)}-", f"bounces+d0{b36(delivery.id)}-")
        )
        mailto = [link for link in list_unsubscribe(msg) if link.startswith("mailto:")][0]
        assert not mailto.startswith(
            (f"mailto:unsubscribe+u{b36(sub_id)}-", f"mailto:unsubscribe+u0{b36(sub_id)}-")
        )
    masked = {int(sent.envelopes[a].split("+d0", 1)[1].split("-", 1)[0], 36) for a in READERS}
    assert len(masked) == 3 and max(masked) > 10_000  # consecutive ids, scattered values

    ada, bob = sent.ids["ada@example.org"], sent.ids["bob@example.org"]
    with configured_session() as session:
        key = session.get(Subscriber, ada).token_key
    day = verp.today()
    plain = f"d{b36(delivery_of(ada).id)}-{b36(day)}-"  # as sent before masking: the plain id
    signature = verp._sign(sent.settings.secret_key, "d", delivery_of(ada).id, day, key)
    deliver(sent.port, f"bounces+{plain}{signature}@news.example.org", sample("postfix_01.txt"))
    assert status_of(ada) is SubscriberStatus.bounced

    rotated = sent.settings.model_copy(
        update={"secret_key": "k" * 60, "secret_key_fallbacks": [sent.settings.secret_key]}
    )
    assert rotated.signing_keys[0] == sent.settings.secret_key
    with configured_session() as session:
        token = verp.parse_address(rotated, sent.envelopes["bob@example.org"])[1]
        assert inbound._verified(session, rotated, token) == {"delivery_id": delivery_of(bob).id}


def test_a_postfix_dsn_to_the_verp_address_bounces_that_reader_only(sent):
    ada, bob = sent.ids["ada@example.org"], sent.ids["bob@example.org"]
    deliver(sent.port, sent.envelopes["ada@example.org"], sample("postfix_01.txt"))
    assert status_of(ada) is SubscriberStatus.bounced
    assert status_of(bob) is SubscriberStatus.confirmed
    row = delivery_of(ada)
    assert row.state.value == "sent" and row.error.startswith("bounced after 250: hard 5.1.1 (dsn)")
    with configured_session() as session:
        [event] = bounce_events_for(session, ada)
        assert (event.kind.value, event.status, event.effect, event.source) == (
            "hard",
            "5.1.1",
            "bounced",
            "dsn",
        )
        assert bounce_counts(session, row.issue_id) == {"hard": 1, "soft": 0, "policy": 0, "complaint": 0}
        consent = session.exec(select(ConsentEvent).where(ConsentEvent.subscriber_id == ada)).all()
        assert consent[-1].event == "bounced"
    before = snapshot(sent.settings.database_url)
    deliver(sent.port, sent.envelopes["ada@example.org"], sample("postfix_01.txt"))  # replayed
    assert snapshot(sent.settings.database_url) == before


def test_forged_unknown_oversized_and_unreadable_mail_changes_nothing(sent):
    before = snapshot(sent.settings.database_url)
    real = sent.envelopes["bob@example.org"]
    local, domain = real.split("@")
    forged_sig = local[:-1] + ("a" if local[-1] != "a" else "b")
    other_row = local.replace("bounces+d", "bounces+d1", 1)
    for rcpt in (
        f"{forged_sig}@{domain}",
        f"{other_row}@{domain}",
        f"bounces@{domain}",
        f"bounces+junk@{domain}",
    ):
        deliver(sent.port, rcpt, sample("postfix_01.txt"))  # accepted, then dropped
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        deliver(sent.port, f"bob@{domain}", sample("postfix_01.txt"))
    assert next(iter(refused.value.recipients.values()))[0] == 550
    lines = sent.settings.inbound_max_bytes // 78 + 1
    with pytest.raises(smtplib.SMTPResponseException) as too_big:  # at MAIL FROM (SIZE=) or DATA
        deliver(sent.port, real, b"Subject: x\r\n\r\n" + b"y" * 76 * lines + b"\r\n" * lines)
    assert too_big.value.smtp_code == 552
    for junk in (b"\x00\xff\xfe not mail at all", b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n"):
        deliver(sent.port, real, junk)
    assert snapshot(sent.settings.database_url) == before
    deliver(sent.port, real, sample("postfix_01.txt"))  # the server is still there and still works
    assert status_of(sent.ids["bob@example.org"]) is SubscriberStatus.bounced


def test_policy_refusals_count_for_the_issue_never_against_the_reader(sent):
    cy = sent.ids["cy@example.org"]
    deliver(sent.port, sent.envelopes["cy@example.org"], sample("simple_42.txt"))  # Gmail 5.7.1
    deliver(sent.port, sent.envelopes["ada@example.org"], sample("yahoo_01.txt"))  # a final 4.4.1
    assert status_of(cy) is SubscriberStatus.confirmed
    issue_id = delivery_of(cy).issue_id
    with configured_session() as session:
        assert session.get(Subscriber, cy).bounce_score == 0
        assert session.get(Subscriber, sent.ids["ada@example.org"]).bounce_score == 1.0
    # what an operator sees: `newsletter issues show` and /metrics
    shown = admin.show_issue(sent.settings, issue_id)["bounces"]
    assert shown == {"hard": 0, "soft": 1, "policy": 1, "complaint": 0}
    settings = sent.settings.model_copy(update={"metrics_token": "m" * 32})
    with TestClient(create_app(settings)) as client:
        text = client.get("/metrics", headers={"Authorization": f"Bearer {'m' * 32}"}).text
    assert f'newsletter_bounces{{issue="{issue_id}",period=' in text
    found = dict(re.findall(rf'newsletter_bounces{{issue="{issue_id}",[^}}]*kind="(\w+)"}} (\d+)', text))
    assert found == {"hard": "0", "soft": "1", "policy": "1", "complaint": "0"}


def test_auto_replies_and_delay_warnings_are_ignored(sent):
    before = snapshot(sent.settings.database_url)
    ooo = (
        b"From: ada@example.org\r\nTo: digest@news.example.org\r\nSubject: Out of Office: back Monday\r\n"
        b"Auto-Submitted: auto-replied\r\nX-Autoreply: yes\r\n\r\nI am away.\r\n"
    )
    deliver(sent.port, sent.envelopes["ada@example.org"], ooo)
    deliver(sent.port, sent.envelopes["ada@example.org"], sample("dsn_06.txt"))  # Action: delayed
    links = list_unsubscribe(sent.messages["ada@example.org"])
    mailto = next(a for a in links if a.startswith("mailto:")).removeprefix("mailto:")
    deliver(sent.port, mailto, ooo)  # an out-of-office never unsubscribes anyone
    assert snapshot(sent.settings.database_url) == before


EXIM_DELAY = (
    b"From: Mail Delivery System <Mailer-Daemon@mx.example.net>\r\n"
    b"Subject: Warning: message 1abc-0002 delayed 24 hours\r\nAuto-Submitted: auto-replied\r\n\r\n"
    b"This message was created automatically by mail delivery software.\r\n"
    b"A message that you sent has not yet been delivered to one or more of its\r\n"
    b"recipients after more than 24 hours on the queue on mx.example.net.\r\n\r\n"
    b"The address to which the message has not yet been delivered is:\r\n\r\n  %s\r\n"
    b"    Delay reason: SMTP error from remote mail server after RCPT TO:<%s>:\r\n"
    b"    450 <%s>: Recipient address rejected: Greylisted\r\n\r\n"
    b"No action is required on your part. Delivery attempts will continue for\r\nsome time.\r\n"
)


def report(
    address: str, fields: str, content_type: str = "multipart/report; report-type=delivery-status"
) -> bytes:
    """A DSN with one recipient block of `fields`, wrapped as `content_type`."""
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: {content_type}; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        f"Your message could not be delivered.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; {address}\r\n"
        f"Action: failed\r\n{fields}\r\n--b--\r\n"
    ).encode()


def test_delays_and_full_mailboxes_never_bounce_a_reader_at_once(sent):
    """A delay notice written as plain text (Exim's, greylisted with a 450) was read as a hard
    bounce; so were a DSN whose only code is the server's basic 452, and a DSN wrapped in
    multipart/mixed (its 5.2.2 and 5.7.1 were not read): each bounced the reader at once."""
    ada, bob, cy = (sent.ids[a] for a in READERS)
    address = "ada@example.org"
    deliver(sent.port, sent.envelopes[address], EXIM_DELAY % ((address.encode(),) * 3))
    with configured_session() as session:
        assert bounce_events_for(session, ada) == []  # a warning: nothing counted
    deliver(
        sent.port,
        sent.envelopes["bob@example.org"],
        report("bob@example.org", "Diagnostic-Code: smtp; 452 Mailbox full"),
    )
    mixed = "multipart/mixed"
    deliver(sent.port, sent.envelopes["cy@example.org"], report("cy@example.org", "Status: 5.7.1", mixed))
    with configured_session() as session:
        assert [e.kind.value for e in bounce_events_for(session, bob)] == ["soft"]
        assert [e.kind.value for e in bounce_events_for(session, cy)] == ["policy"]
    assert {status_of(i) for i in (ada, bob, cy)} == {SubscriberStatus.confirmed}


def test_lmtp_answers_each_recipient_after_data(sent):
    """RFC 2033 §4.2: one reply per accepted recipient after the data; with one reply for two,
    an LMTP client (Postfix batches recipients) waits for the second, times out and delivers again."""
    links = list_unsubscribe(sent.messages["bob@example.org"])
    mailto = next(a for a in links if a.startswith("mailto:")).removeprefix("mailto:")
    port = free_port()
    controller = inbound.start(sent.settings, "127.0.0.1", port, lmtp=True)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            replies = conn.makefile("rb")
            assert replies.readline().startswith(b"220")
            conn.sendall(b"LHLO test\r\n")
            while not replies.readline().startswith(b"250 "):
                pass
            for line in (
                b"MAIL FROM:<>",
                f"RCPT TO:<{mailto}>".encode(),
                b"RCPT TO:<bounces@news.example.org>",
            ):
                conn.sendall(line + b"\r\n")
                assert replies.readline().startswith(b"250"), line
            conn.sendall(b"DATA\r\n")
            assert replies.readline().startswith(b"354")
            conn.sendall(b"From: bob@example.org\r\nSubject: unsubscribe\r\n\r\nplease\r\n.\r\n")
            assert [replies.readline()[:3] for _ in range(2)] == [b"250", b"250"]
            conn.sendall(b"QUIT\r\n")
    finally:
        controller.stop()
    assert status_of(sent.ids["bob@example.org"]) is SubscriberStatus.unsubscribed


def test_a_mailto_unsubscribe_takes_effect(sent):
    msg = sent.messages["bob@example.org"]
    links = list_unsubscribe(msg)
    mailto = next(a for a in links if a.startswith("mailto:")).removeprefix("mailto:")
    deliver(sent.port, mailto, b"From: bob@example.org\r\nSubject: unsubscribe\r\n\r\n", "bob@example.org")
    bob = sent.ids["bob@example.org"]
    assert status_of(bob) is SubscriberStatus.unsubscribed
    with configured_session() as session:
        events = session.exec(select(ConsentEvent.event).where(ConsentEvent.subscriber_id == bob)).all()
        assert "unsubscribed:mailto" in events
        assert [e.kind.value for e in bounce_events_for(session, bob)] == ["unsubscribe"]


def arf_report(original: bytes, return_path: str, feedback: bytes = b"abuse") -> bytes:
    """A feedback-loop report (RFC 5965) as a mailbox provider sends it, about `original` as the
    reader's mailbox stored it (with the Return-Path its MTA added)."""
    stored = f"Return-Path: <{return_path}>\r\n".encode() + original
    return (
        b"From: feedback@fbl.example.net\r\nTo: bounces@news.example.org\r\nSubject: FW: complaint\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"\r\n\r\n'
        b"--arf\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        b"--arf\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: " + feedback + b"\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n\r\n"
        b"--arf\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        + stored
        + b"\r\n--arf--\r\n"
    )


def test_an_arf_complaint_unsubscribes_and_suppresses(sent, smtp_server):
    box, _ = smtp_server
    raw = next(data for _, rcpts, data in box.messages if rcpts == ["cy@example.org"])
    # A DKIM/SPF failure report (RFC 6591) or a "not-spam" report is no reader's complaint: an
    # auth-failure report unsubscribed and suppressed the reader of the message it was about.
    before = snapshot(sent.settings.database_url)
    for feedback in (b"auth-failure", b"not-spam"):
        deliver(
            sent.port, "bounces@news.example.org", arf_report(raw, sent.envelopes["cy@example.org"], feedback)
        )
    assert snapshot(sent.settings.database_url) == before
    report = arf_report(raw, sent.envelopes["cy@example.org"])
    deliver(sent.port, "bounces@news.example.org", report, "feedback@fbl.example.net")
    cy = sent.ids["cy@example.org"]
    assert status_of(cy) is SubscriberStatus.unsubscribed
    with configured_session() as session:
        sub = session.get(Subscriber, cy)
        assert suppression_for(session, sub.email_key).reason == "complaint"
        events = session.exec(select(ConsentEvent.event).where(ConsentEvent.subscriber_id == cy)).all()
        assert "unsubscribed:complaint" in events
        assert bounce_counts(session, delivery_of(cy).issue_id)["complaint"] == 1
    before = snapshot(sent.settings.database_url)
    deliver(sent.port, "bounces@news.example.org", report)  # the provider sends it again
    unrelated = b"From: someone@example.net\r\nSubject: hello\r\n\r\nnot ours\r\n"
    deliver(sent.port, "bounces@news.example.org", arf_report(unrelated, "someone@example.net"))
    assert snapshot(sent.settings.database_url) == before


def test_an_arf_complaint_sent_to_the_mailto_address_counts_too(sent, smtp_server):
    """Some feedback loops send their report to the List-Unsubscribe mailto: it was dropped with
    the auto-replies there, and the reader who complained stayed subscribed."""
    box, _ = smtp_server
    raw = next(data for _, rcpts, data in box.messages if rcpts == ["ada@example.org"])
    links = list_unsubscribe(sent.messages["ada@example.org"])
    mailto = next(a for a in links if a.startswith("mailto:")).removeprefix("mailto:")
    deliver(sent.port, mailto, arf_report(raw, "someone@example.net"), "feedback@fbl.example.net")
    ada = sent.ids["ada@example.org"]
    assert status_of(ada) is SubscriberStatus.unsubscribed
    with configured_session() as session:
        assert suppression_for(session, session.get(Subscriber, ada).email_key).reason == "complaint"


# ---- scoring (record_bounce directly: the entry point of every source) -----------------------


def soft(settings, sub_id: int, days_ago: float, status: str = "4.2.2"):
    with configured_session() as session:
        event = BounceEvent(
            kind="soft",
            address=None,
            delivery_id=None,
            status=status,
            diagnostic="452 mailbox full",
            source="webhook",
            received_at=utcnow() - timedelta(days=days_ago),
            subscriber_id=sub_id,
        )
        return record_bounce(session, settings, event).effect


def test_soft_bounces_add_up_decay_and_count_once_a_day(configure, db_url):
    settings = configure(NEWSLETTER_DATABASE_URL=db_url)
    weekly = add_subscriber("weekly@example.org")
    assert [soft(settings, weekly, d) for d in (21, 14, 14, 7)] == [
        Effect.scored,
        Effect.scored,
        Effect.noted,  # the same day again: one bad day is one bounce
        Effect.scored,
    ]
    assert status_of(weekly) is SubscriberStatus.confirmed
    assert soft(settings, weekly, 0) is Effect.bounced  # 4 bad weeks in a row pass 3.0
    stale = add_subscriber("stale@example.org")
    assert [soft(settings, stale, d) for d in (200, 130, 61, 0)] == [Effect.scored] * 4  # each restarts
    with configured_session() as session:
        assert session.get(Subscriber, stale).bounce_score == pytest.approx(1.0)


def test_a_fresh_opt_in_starts_the_bounce_count_afresh(configure, db_url):
    """A reader bounced by four soft bounces who opted in again kept their score (3.19), so the
    first soft bounce after it bounced them again; an operator's re-add kept the leave date."""
    settings = configure(NEWSLETTER_DATABASE_URL=db_url)
    weekly = add_subscriber("weekly@example.org")
    for days_ago in (28, 21, 14, 7):
        soft(settings, weekly, days_ago)
    assert status_of(weekly) is SubscriberStatus.bounced
    with configured_session() as session:
        subs.request_subscription(session, settings, "weekly@example.org", "robots", subs.Client())
    with configured_session() as session:
        sub = session.get(Subscriber, weekly)
        token = make_token(settings, Purpose.confirm, sub.token_key, sub.token_version)
    with configured_session() as session:
        subs.confirm_subscription(session, settings, token)
    with configured_session() as session:
        sub = session.get(Subscriber, weekly)
        assert (sub.status, sub.bounce_score, sub.bounce_score_at) == (SubscriberStatus.confirmed, 0.0, None)
    assert soft(settings, weekly, 0) is Effect.scored  # one bad day is one bad day again
    assert status_of(weekly) is SubscriberStatus.confirmed

    admin.remove_subscriber(settings, "weekly@example.org", erase=False)
    back = admin.add_subscriber(
        settings, "weekly@example.org", "robots", "weekly", 10, confirmed=True, resubscribe=True
    )
    assert back.status is SubscriberStatus.confirmed and back.unsubscribed_at is None


def test_a_hard_bounce_stays_after_a_later_success_and_can_be_scored_instead(configure, db_url):
    settings = configure(NEWSLETTER_DATABASE_URL=db_url)
    ada = add_subscriber("ada@example.org")
    with configured_session() as session:
        hard = BounceEvent(
            kind="hard", address="ADA@example.org", delivery_id=None, status="5.1.1", source="ses"
        )
        assert record_bounce(session, settings, hard).changed
    admin.ingest(settings, path=sample_feed_path())
    admin.send_now(settings, "weekly")  # a later issue: nothing goes to ada, nothing un-bounces her
    assert status_of(ada) is SubscriberStatus.bounced
    lenient = configure(NEWSLETTER_DATABASE_URL=db_url, NEWSLETTER_BOUNCE_HARD_IMMEDIATE="false")
    bob = add_subscriber("bob@example.org")
    with configured_session() as session:
        event = BounceEvent(kind="hard", address="bob@example.org", delivery_id=None, status="5.1.1")
        assert record_bounce(session, lenient, event).effect is Effect.scored
    assert status_of(bob) is SubscriberStatus.confirmed


def test_a_bounced_welcome_email_bounces_its_reader_through_lmtp(sent, smtp_server):
    """Journey emails carry their own VERP sender (their outbox row); the endpoint speaks LMTP too."""
    box, _ = smtp_server
    with configured_session() as session:
        subs.request_subscription(session, sent.settings, "new@example.org", "robots")
    [confirm] = box.wait_for(1, to="new@example.org")
    link = re.search(
        r"https://news.example.org(/confirm/\S+)", str(confirm.get_body(("plain",)).get_content())
    )[1]
    with TestClient(create_app(sent.settings)) as client:
        assert client.post(link).status_code == 200
    box.wait_for(2, to="new@example.org")  # the welcome
    welcome_sender = [f for f, rcpts, _ in box.messages if rcpts == ["new@example.org"]][-1]
    assert welcome_sender.startswith("bounces+j")
    port = free_port()
    controller = inbound.start(sent.settings, "127.0.0.1", port, lmtp=True)
    try:
        with smtplib.LMTP("127.0.0.1", port) as lmtp:
            lmtp.sendmail("", [welcome_sender], sample("exim_01.txt"))  # 5.1.1
    finally:
        controller.stop()
    with configured_session() as session:
        sub = subs.find_by_email(session, "new@example.org")
        assert sub.status is SubscriberStatus.bounced
        [event] = bounce_events_for(session, sub.id)
        assert (event.kind.value, event.status, event.delivery_id) == ("hard", "5.1.1", None)


def test_inbound_serve_on_a_taken_port_says_so_in_one_line(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.conftest import process_env

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = process_env(NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
        argv = [sys.executable, "-m", "newsletter", "inbound", "serve", "--port", str(port)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_control_characters_from_a_provider_are_stored_as_spaces(configure, pg_url):
    settings = configure(NEWSLETTER_DATABASE_URL=pg_url)
    sub_id = add_subscriber("nul@example.org")
    with configured_session() as session:
        event = BounceEvent(
            kind="hard", address="nul@example.org", status="5.1.1\x00", diagnostic="no\x00such\r\nuser"
        )
        assert record_bounce(session, settings, event).effect is Effect.bounced
    with configured_session() as session:
        [stored] = bounce_events_for(session, sub_id)
    assert (stored.status, stored.diagnostic) == ("5.1.1", "no such  user")


def test_erasing_a_reader_erases_their_bounce_events_and_export_lists_them(configure, pg_url):
    settings = configure(NEWSLETTER_DATABASE_URL=pg_url)
    sub_id = add_subscriber("gone@example.org")
    with configured_session() as session:
        record_bounce(session, settings, BounceEvent(kind="soft", address="gone@example.org", status="4.2.2"))
    exported = admin.export(settings, "gone@example.org")["bounce_events"]
    assert [(e["kind"], e["status"], e["effect"]) for e in exported] == [("soft", "4.2.2", "scored")]
    admin.remove_subscriber(settings, "gone@example.org", erase=True)
    with configured_session() as session:
        assert bounce_events_for(session, sub_id) == []
        assert session.get(Subscriber, sub_id) is None
