"""A relay's 5xx: only a refusal of the address bounces the reader (security review H3).

A real SMTP server (aiosmtpd, `tests/faultkit.FaultySMTP`) refuses on cue at MAIL FROM, RCPT or
DATA; the issue is sent in-process on SQLite and PostgreSQL. Evidence is the ledger, the
subscribers' status and what the server accepted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from newsletter import admin
from newsletter.mail.senders import about_address
from tests.faultkit import FaultySMTP, delivery_rows, relay_world

READERS = 12


@pytest.fixture
def relay(configure, db_url) -> Iterator[tuple[str, FaultySMTP]]:
    """A misbehaving relay, the sample papers and twelve confirmed weekly readers."""
    with relay_world(configure, db_url, READERS, NEWSLETTER_BATCH_SIZE="5") as (box, _):
        yield db_url, box


def send(db_url: str) -> dict:
    from newsletter.config import get_settings

    return admin.send_now(get_settings(), "weekly")


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("mail", "550 5.7.1 Sender address rejected: not owned by user"),
        ("data", "554 5.7.1 Message rejected: URL in body is on a blocklist"),
        ("data", "552 5.3.4 Message size exceeds fixed maximum message size"),
    ],
)
def test_a_relay_refusing_the_message_bounces_no_one(relay, stage, reply):
    db_url, box = relay
    setattr(box, f"{stage}_reply", reply)
    result = send(db_url)
    assert result["counts"]["failed"] == READERS and box.total() == 0
    found = delivery_rows(db_url)
    assert {status for status, *_ in found.values()} == {"confirmed"}  # before the fix: all bounced
    assert {(state, code, error) for _, state, code, error in found.values()} == {
        ("failed", int(reply[:3]), reply)
    }


def test_only_a_refused_address_bounces_and_only_that_reader(relay):
    db_url, box = relay
    gone, policy, full = "reader00003@example.org", "reader00005@example.org", "reader00007@example.org"
    box.replies[gone] = "550 5.1.1 No such user here"
    box.replies[policy] = "550 5.7.1 Relaying denied"
    box.replies[full] = "552 5.2.2 Mailbox full"
    result = send(db_url)
    assert result["counts"]["sent"] == READERS - 3 and result["counts"]["failed"] == 3
    found = delivery_rows(db_url)
    assert found[gone][:2] == ("bounced", "failed")
    assert found[policy][:2] == found[full][:2] == ("confirmed", "failed")
    assert sum(status == "bounced" for status, *_ in found.values()) == 1


@pytest.mark.parametrize(
    ("code", "reply", "bounce"),
    [
        (550, "5.1.1 No such user", True),
        (550, "5.1.10 Recipient address rejected", True),
        (553, "5.1.3 Bad destination mailbox address syntax", True),
        (550, "No such user", True),
        (551, "User not local", True),
        (550, "5.0.0 User unknown", True),
        (550, "5.7.1 Relaying denied", False),
        (554, "5.7.1 Client host rejected: blocked using zen.spamhaus.org", False),
        (552, "5.2.2 Mailbox full", False),
        (552, "Message size exceeds fixed maximum", False),
        (550, "5.3.4 Message too big for system", False),
        (554, "Transaction failed", False),
    ],
)
def test_which_recipient_refusals_are_about_the_address(code, reply, bounce):
    assert about_address(code, reply) is bounce
