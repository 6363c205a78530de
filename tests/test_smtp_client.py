"""Our SMTP client (`newsletter/mail/smtp.py`) against a real server (aiosmtpd), once advertising
ESMTP PIPELINING and once not (aiosmtpd's default): what arrives, what a refusal raises, that a
message begun but not ended is never accepted, and a relay cutting the connection between a
digest's body and its final `.` in the middle of a batch: that row is not marked sent and is
sent again on the next dispatch, and every reader gets exactly one digest.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter import admin
from newsletter.config import get_settings
from newsletter.delivery import dispatch_issue
from newsletter.mail.senders import (
    MessageRefused,
    RecipientRefused,
    SMTPSender,
    TransientSendError,
    kept_sender,
)
from newsletter.mail.smtp import dot_stuffed
from tests.faultkit import FaultySMTP, SMTPServer, delivery_rows, relay_world, wait_until

MESSAGE = (
    b"From: news@example.org\r\nTo: ada@example.org\r\nSubject: hi\r\n\r\n"
    b"hello\r\n.a line that starts with a dot\r\n.\r\n..\r\nbye\r\n"
)


@pytest.fixture(params=[False, True], ids=["lock-step", "pipelining"])
def relay(request, configure) -> Iterator[tuple[FaultySMTP, SMTPSender]]:
    box = FaultySMTP(keep=True, pipelining=request.param)
    server = SMTPServer(box).start()
    sender = SMTPSender(configure(NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(server.port)))
    try:
        yield box, sender
    finally:
        sender.close()
        server.stop()


def test_messages_arrive_byte_for_byte_with_or_without_pipelining(relay):
    box, sender = relay
    for n in range(3):
        sender.send(f"r{n}@example.org", MESSAGE)
    assert sender.pipelining is box.pipelining
    assert box.received == {"r0@example.org": 1, "r1@example.org": 1, "r2@example.org": 1}
    assert [content for _, content in box.raw] == [MESSAGE] * 3  # dot-stuffed, then unstuffed


def test_dot_stuffing_is_what_smtplib_writes():
    """smtplib.SMTP.data: every `.` at the start of a line doubled, the last line ended."""
    rng = random.Random(16)
    for _ in range(5000):
        message = bytes(rng.choice(b".\r\nab=") for _ in range(rng.randint(0, 40)))
        expected = re.sub(rb"(?m)^\.", b"..", message)
        assert dot_stuffed(message) == (expected if expected.endswith(b"\r\n") else expected + b"\r\n")


def test_a_begun_message_is_accepted_only_when_ended(relay):
    box, sender = relay
    sender.begin("ada@example.org", MESSAGE)
    sender.abandon()  # e.g. the reader unsubscribed while the previous row's commit was in flight
    sender.begin("bob@example.org", MESSAGE)
    sender.close()  # a QUIT would be part of the body: close abandons it instead
    assert box.total() == 0
    sender.begin("cy@example.org", MESSAGE)
    assert box.total() == 0
    sender.end()
    assert box.received == {"cy@example.org": 1}


def test_refusals_are_sorted_and_the_connection_survives_them(relay):
    box, sender = relay
    box.replies["gone@example.org"] = "550 5.1.1 No such user"
    with pytest.raises(RecipientRefused) as refused:
        sender.send("gone@example.org", MESSAGE)
    assert refused.value.code == 550 and "5.1.1 No such user" in str(refused.value)
    box.rcpt_451 = 1
    with pytest.raises(TransientSendError) as later:
        sender.send("ada@example.org", MESSAGE)
    assert later.value.code == 451
    box.mail_reply = "550 5.7.1 Sender address rejected"
    with pytest.raises(MessageRefused):
        sender.send("ada@example.org", MESSAGE)
    box.mail_reply, box.data_reply = None, "554 5.7.1 Message rejected"
    sender.begin("ada@example.org", MESSAGE)  # the content is judged at the `.`
    with pytest.raises(MessageRefused) as content:
        sender.end()
    assert content.value.code == 554
    assert sender.connected  # none of these closes the connection
    box.data_reply = None
    sender.send("ada@example.org", MESSAGE)
    assert box.received == {"ada@example.org": 1}
    box.mail_421 = 1  # "closing": the connection is gone, the next send reconnects
    with pytest.raises(TransientSendError):
        sender.send("bob@example.org", MESSAGE)
    assert not sender.connected
    sender.send("bob@example.org", MESSAGE)
    assert box.received == {"ada@example.org": 1, "bob@example.org": 1}


def test_the_next_envelope_goes_out_behind_the_dot_where_the_relay_pipelines(relay):
    """`end(then=…)`: one round trip per message. The next MAIL and RCPT reach a pipelining relay
    with the `.` (before `begin` is called for that message), and `begin` only reads their
    replies; a refusal among them is raised by that `begin`, an envelope sent ahead for a
    message that never comes is never ended, and a lock-step relay is asked as before."""
    box, sender = relay
    sender.begin("ada@example.org", MESSAGE)
    sender.end(then=("bob@example.org", None))
    if box.pipelining:
        wait_until(lambda: box.rcpt_attempts["bob@example.org"] == 1, 10, "bob's RCPT behind ada's `.`")
    else:
        assert box.rcpt_attempts["bob@example.org"] == 0
    sender.begin("bob@example.org", MESSAGE)
    box.replies["gone@example.org"] = "550 5.1.1 No such user"
    sender.end(then=("gone@example.org", None))
    with pytest.raises(RecipientRefused):
        sender.begin("gone@example.org", MESSAGE)
    sender.begin("cy@example.org", MESSAGE)
    box.data_reply = "554 5.7.1 Message rejected"
    with pytest.raises(MessageRefused):  # a refused `.`: the envelope behind it still stands
        sender.end(then=("dee@example.org", None))
    box.data_reply = None
    sender.begin("dee@example.org", MESSAGE)
    sender.end(then=("eve@example.org", None))  # eve's row is skipped after all ...
    sender.begin("fay@example.org", MESSAGE)  # ... so the data phase opened for her is dropped
    sender.end(then=("gil@example.org", None))
    sender.close()  # and so is one sent ahead for the batch's last message
    assert box.received == {
        "ada@example.org": 1,
        "bob@example.org": 1,
        "dee@example.org": 1,
        "fay@example.org": 1,
    }
    assert box.rcpt_attempts["bob@example.org"] == 1 and box.rcpt_attempts["dee@example.org"] == 1
    assert [content for _, content in box.raw] == [MESSAGE] * 4
    assert box.ehlos == (2 if box.pipelining else 1)  # eve's unused data phase cost a connection


@pytest.mark.parametrize("pipelining", [False, True], ids=["lock-step", "pipelining"])
def test_a_digest_cut_off_before_its_final_dot_is_not_sent_and_goes_out_on_the_retry(
    configure, pg_url, pipelining
):
    readers = 6
    with relay_world(configure, pg_url, readers) as (box, addresses):
        box.pipelining = pipelining
        box.cut_before_dot = {3}  # the third digest: its body arrives, its `.` never does
        first = admin.send_now(get_settings(), "weekly")
        assert box.faults["cut"] == 1
        # The first two were accepted and are marked sent; the third is deferred, not sent, and
        # the batch gave the rest back (the connection is gone).
        rows = delivery_rows(pg_url)
        assert sorted(a for a, (_, state, *_) in rows.items() if state == "sent") == addresses[:2]
        assert box.received == dict.fromkeys(addresses[:2], 1)
        assert rows[addresses[2]][1] == "deferred" and "connection lost" in rows[addresses[2]][3]
        assert first["counts"]["deferred"] == readers - 2

        dispatch_issue(get_settings(), first["issue_id"])  # the retry
        rows = delivery_rows(pg_url)
        assert {state for _, state, *_ in rows.values()} == {"sent"}
        assert box.received == dict.fromkeys(addresses, 1)


def test_one_at_a_time_emails_share_a_connection_that_outlives_a_relay_restart(configure):
    """Journey emails (`kept_sender`): one connection per process, not one per email; a
    connection the relay dropped while idle is opened again and the email still goes out once."""
    box = FaultySMTP()
    server = SMTPServer(box).start()
    try:
        settings = configure(NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(server.port))
        kept_sender(settings).send("ada@example.org", MESSAGE)
        kept_sender(settings).send("bob@example.org", MESSAGE)
        assert box.ehlos == 1
        server.stop()  # the relay restarts: the kept connection is gone
        server.start()
        kept_sender(settings).send("cy@example.org", MESSAGE)
        assert box.ehlos == 2
        assert box.received == {"ada@example.org": 1, "bob@example.org": 1, "cy@example.org": 1}
    finally:
        kept_sender(settings).close()
        server.stop()


def _only_news_s3cret(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ARG001
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"news", b"s3cret")
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_logs_in_and_a_wrong_password_is_a_refusal(configure, mechanism):
    box = FaultySMTP()
    other = {"PLAIN", "LOGIN"} - {mechanism}
    server = SMTPServer(
        box,
        authenticator=_only_news_s3cret,
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=other,
    ).start()

    def sender(password: str) -> SMTPSender:
        return SMTPSender(
            configure(
                NEWSLETTER_SMTP_HOST="127.0.0.1",
                NEWSLETTER_SMTP_PORT=str(server.port),
                NEWSLETTER_SMTP_USERNAME="news",
                NEWSLETTER_SMTP_PASSWORD=password,
            )
        )

    try:
        good = sender("s3cret")
        good.send("ada@example.org", MESSAGE)
        good.close()
        with pytest.raises(MessageRefused) as refused:
            sender("wrong").send("bob@example.org", MESSAGE)
        assert refused.value.code == 535
        assert box.received == {"ada@example.org": 1}
    finally:
        server.stop()
