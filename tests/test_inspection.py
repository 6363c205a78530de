"""Why did it fail? The operator reads each delivery's SMTP answer from the CLI, not SQL."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from newsletter import admin
from newsletter.cli import app
from tests.test_digests import add_subscriber, ingest_sample

runner = CliRunner()
GOOD = [f"reader{i}@example.org" for i in range(3)]


@pytest.fixture
def sent_issue(configure, pg_url, smtp_server):
    """An issue sent through a real SMTP server that refuses one reader (550) and defers one (450)."""
    box, port = smtp_server
    box.replies = {
        "bounce@example.org": "550 5.1.1 <bounce@example.org>: Recipient address rejected: User unknown",
        "slow@example.org": "450 4.7.1 <slow@example.org>: try again later",
    }
    settings = configure(
        NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port)
    )
    ingest_sample()
    for address in [*GOOD, "bounce@example.org", "slow@example.org"]:
        add_subscriber(address, "language models")
    result = admin.send_now(settings, "weekly")
    assert result["counts"]["sent"] == 3
    return result["issue_id"]


def cli(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def test_failed_and_deferred_deliveries_show_the_smtp_code_reply_and_attempts(sent_issue):
    failed = json.loads(cli("deliveries", "list", "--state", "failed", "--json").stdout)
    [row] = failed["rows"]
    assert (row["email"], row["smtp_code"], row["attempts"]) == ("bounce@example.org", 550, 1)
    assert "User unknown" in row["error"] and row["last_attempt_at"] and row["issue_id"] == sent_issue
    [deferred] = json.loads(cli("deliveries", "list", "--state", "deferred", "--json").stdout)["rows"]
    assert (deferred["email"], deferred["smtp_code"]) == ("slow@example.org", 450)
    assert "try again later" in deferred["error"]

    mine = cli(
        "deliveries",
        "list",
        "--state",
        "sent",
        "--state",
        "failed",
        "--email",
        "Bounce@example.org",
        "--json",
    )
    assert [r["email"] for r in json.loads(mine.stdout)["rows"]] == ["bounce@example.org"]

    shown = cli("issues", "show", str(sent_issue), "--failures").stdout
    assert "bounce@example.org" in shown and "slow@example.org" in shown and "550" in shown
    assert "User unknown" in shown and "reader0@" not in shown  # sent rows are not failures
    as_json = json.loads(cli("issues", "show", str(sent_issue), "--failures", "--json").stdout)
    assert {r["email"] for r in as_json["failures"]["rows"]} == {"bounce@example.org", "slow@example.org"}
    assert as_json["counts"]["failed"] == 1


def test_long_lists_page_by_id_and_bad_input_gets_one_line(sent_issue):
    first = json.loads(cli("deliveries", "list", "--state", "sent", "--limit", "2", "--json").stdout)
    assert len(first["rows"]) == 2 and first["next_after"] == first["rows"][-1]["id"]
    after = str(first["next_after"])
    rest = json.loads(cli("deliveries", "list", "--state", "sent", "--after", after, "--json").stdout)
    assert rest["next_after"] is None
    emails = [r["email"] for r in first["rows"] + rest["rows"]]
    assert sorted(emails) == GOOD  # every sent row once, none twice
    text = cli("deliveries", "list", "--state", "sent", "--limit", "2").stdout
    assert f"--after {after}" in text  # the text output says how to go on

    for args, message in [
        (("deliveries", "list", "--state", "lost"), "unknown delivery state"),
        (("deliveries", "list", "--issue", "999"), "no issue with id 999"),
        (("deliveries", "list", "--limit", "0"), "--limit must be between"),
        (("deliveries", "list", "--email", "who@example.org"), "no subscriber with address who@example.org"),
        (("issues", "show", "999", "--failures"), "no issue with id 999"),
        (("issues", "show", "1", "--limit", "5"), "--limit goes with --failures"),  # was ignored
        (("issues", "show", "1", "--failures", "--limit", "0"), "--limit must be between"),
        (("preview", "--interests", "x", "--subscriber", "a@example.org"), "not both"),  # was ignored
    ]:
        result = cli(*args, code=1)
        assert message in result.stderr and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_the_next_page_command_issues_show_prints_runs(sent_issue):
    """With more than a page (100) of failures, the hint read `--limit None` when --limit was
    not given, and running it was a usage error."""
    import re

    from newsletter.models import Delivery, DeliveryState, Subscriber, SubscriberStatus
    from newsletter.testing import configured_session

    with configured_session() as session:
        readers = [
            Subscriber(email=f"gone{i}@example.org", email_key=f"gone{i}@example.org") for i in range(100)
        ]
        for sub in readers:
            sub.status = SubscriberStatus.confirmed
            session.add(sub)
        session.flush()
        for sub in readers:
            session.add(
                Delivery(issue_id=sent_issue, subscriber_id=sub.id, state=DeliveryState.failed, attempts=1)
            )
    shown = cli("issues", "show", str(sent_issue), "--failures").stdout
    more = re.search(r"newsletter (deliveries list .*)$", shown, re.M)
    assert more, shown
    rest = cli(*more[1].split()).stdout
    assert "#" in rest and "--limit None" not in shown
