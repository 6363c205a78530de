"""A relay's 5xx: only a refusal of the address bounces the reader; refused messages pause the
issue until an operator resumes it (security review H3).

A real SMTP server (aiosmtpd, `tests/faultkit.FaultySMTP`) refuses on cue at MAIL FROM, RCPT or
DATA; the issue is sent in-process on SQLite and PostgreSQL, and the operator uses the real
`newsletter` command. Evidence is the ledger, the subscribers' status, the issue's pause, the
log and what the server accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from newsletter import admin
from newsletter.cli import app
from newsletter.config import get_settings
from newsletter.delivery import recover_stale_claims
from newsletter.mail.senders import about_address
from tests.faultkit import FaultySMTP, delivery_rows, relay_world

READERS = 12
runner = CliRunner()


@pytest.fixture
def relay(configure, db_url) -> Iterator[tuple[str, FaultySMTP]]:
    """A misbehaving relay, the sample papers and twelve confirmed weekly readers."""
    with relay_world(configure, db_url, READERS, NEWSLETTER_BATCH_SIZE="5") as (box, _):
        yield db_url, box


def send(db_url: str) -> dict:
    return admin.send_now(get_settings(), "weekly")


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("mail", "550 5.7.1 Sender address rejected: not owned by user"),
        ("data", "554 5.7.1 Message rejected: URL in body is on a blocklist"),
        ("data", "552 5.3.4 Message size exceeds fixed maximum message size"),
    ],
)
def test_a_relay_refusing_the_message_bounces_no_one_and_pauses_the_issue(relay, stage, reply, caplog):
    db_url, box = relay
    setattr(box, f"{stage}_reply", reply)
    result = send(db_url)
    # Ten refusals in a row (NEWSLETTER_MAX_SEND_ERRORS' default) pause the issue; the other two
    # rows are given back unsent. Before the fix all twelve were failed and bounced.
    assert result["counts"]["failed"] == 10 and box.total() == 0
    assert result["counts"]["pending"] + result["counts"]["deferred"] == READERS - 10
    found = delivery_rows(db_url)
    assert {status for status, *_ in found.values()} == {"confirmed"}
    failed = {(state, code, error) for _, state, code, error in found.values() if state == "failed"}
    assert failed == {("failed", int(reply[:3]), reply)}
    assert reply in result["paused"]
    [paused] = [r for r in caplog.records if r.getMessage() == "issue.paused"]
    assert paused.issue_id == result["issue_id"] and reply in paused.reason and paused.refused == 10

    setattr(box, f"{stage}_reply", None)  # the operator fixes the relay, then resumes
    resumed = admin.resume_issue(get_settings(), result["issue_id"])
    assert resumed["put_back"] == 10 and resumed["counts"]["sent"] == READERS
    assert sorted(box.received.values()) == [1] * READERS


def test_refusals_that_are_not_in_a_row_do_not_pause(relay):
    db_url, box = relay
    box.replies.update(
        {f"reader{i:05d}@example.org": "550 5.7.1 Relaying denied" for i in range(12) if i != 6}
    )
    result = send(db_url)  # eleven refused, but a 250 in the middle of them
    assert result["counts"]["failed"] == 11 and result["counts"]["sent"] == 1
    assert result["paused"] is None


def test_a_paused_issue_claims_nothing_until_resumed(relay):
    db_url, box = relay
    box.data_reply = "554 5.7.1 Message rejected as spam"
    result = send(db_url)
    assert result["paused"]
    box.data_reply = None
    again = send(db_url)  # a scheduled send or `send --now` of the same period: nothing goes out
    assert again["counts"] == result["counts"] and box.total() == 0
    assert recover_stale_claims(get_settings(), older_than=0) == 0 and box.total() == 0


def test_the_operator_sees_the_pause_and_resumes_from_the_command_line(relay):
    db_url, box = relay
    box.mail_reply = "550 5.7.1 Sender address rejected"
    issue_id = send(db_url)["issue_id"]
    shown = runner.invoke(app, ["issues", "show", str(issue_id)])
    assert (
        shown.exit_code == 0 and "Paused" in shown.output and "5.7.1 Sender address rejected" in shown.output
    )
    assert f"newsletter issues resume {issue_id}" in shown.output
    data = json.loads(runner.invoke(app, ["issues", "show", str(issue_id), "--json"]).stdout)
    assert data["paused_at"] and "refused 10 messages in a row" in data["pause_reason"]
    box.mail_reply = None
    resumed = runner.invoke(app, ["issues", "resume", str(issue_id)])
    assert resumed.exit_code == 0, resumed.output
    assert "10 refused deliveries put back" in resumed.output and f"Sent {READERS}" in resumed.output
    data = json.loads(runner.invoke(app, ["issues", "show", str(issue_id), "--json"]).stdout)
    assert data["paused_at"] is None and data["pause_reason"] is None
    again = runner.invoke(app, ["issues", "resume", str(issue_id)])
    assert again.exit_code == 1 and f"issue {issue_id} is not paused" in again.output
    missing = runner.invoke(app, ["issues", "resume", "999"])
    assert missing.exit_code == 1 and "no issue with id 999" in missing.output


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
