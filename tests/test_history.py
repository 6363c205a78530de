"""`newsletter subscribers show EMAIL`: one reader's whole story, from the real journey.

uvicorn, a Celery worker on Redis, PostgreSQL and an SMTP server that refuses some addresses.
"""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from newsletter import admin, feedback
from newsletter.cli import app
from newsletter.db import session_scope
from tests.conftest import link_in
from tests.test_feedback import vote_links
from tests.test_journey import local

pytestmark = pytest.mark.integration
runner = CliRunner()


def show(*args: str, code: int = 0):
    result = runner.invoke(app, ["subscribers", "show", *args])
    assert result.exit_code == code, result.output
    return result


def test_a_readers_history_holds_consent_emails_failures_bounces_and_votes(stack, configure):
    box = stack.mailbox
    box.replies = {
        "gone@example.org": "550 5.1.1 <gone@example.org>: User unknown",
        "nobody@example.org": "550 5.1.1 <nobody@example.org>: User unknown",
    }
    settings = configure(**{k: v for k, v in stack.env.items() if k.startswith("NEWSLETTER_")})
    admin.ingest(settings)
    web = stack.web.url
    for address in ("ada@example.org", "nobody@example.org"):
        r = httpx.post(web + "/subscribe", data={"email": address, "interests": "language model agents"})
        assert r.status_code == 202
    [confirm] = box.wait_for(1, to="ada@example.org")
    assert httpx.post(local(link_in(confirm, "confirm"), stack)).status_code == 200
    box.wait_for(1, to="ada@example.org", subject="Welcome")
    admin.add_subscriber(settings, "gone@example.org", "robots", "weekly", 5, confirmed=True)
    assert admin.send_now(settings, "weekly")["counts"]["sent"] == 1
    [digest] = box.wait_for(1, to="ada@example.org", subject="week")
    title, more, _ = vote_links(digest)[0]
    assert httpx.post(web + more).status_code == 200

    with session_scope(settings.database_url) as session:  # a provider reports a soft bounce later
        feedback.apply_bounce_event(session, settings, "soft_bounce", "ada@example.org", "452 mailbox full")

    ada = json.loads(show("Ada@Example.org", "--json").stdout)  # any spelling of the address
    assert ada["subscriber"]["status"] == "confirmed"
    assert [c["event"] for c in ada["consent"]] == ["signup_requested", "confirmed"]
    assert {(j["kind"], j["state"], j["smtp_code"]) for j in ada["journey_emails"]} == {
        ("confirm", "sent", 250),
        ("welcome", "sent", 250),
    }
    [sent] = ada["digests"]
    assert (sent["state"], sent["smtp_code"], sent["attempts"]) == ("sent", 250, 1) and sent["sent_at"]
    assert [(v["paper_title"], v["direction"]) for v in ada["votes"]] == [(title, 1)]
    assert ada["failures"] == [] and ada["bounces"] == []  # a soft bounce is no bounce of the address
    [report] = ada["bounce_reports"]
    assert (report["kind"], report["source"], report["diagnostic"]) == ("soft", "webhook", "452 mailbox full")
    assert "token" not in json.dumps(ada)  # nothing that opens a reader's links

    gone = json.loads(show("gone@example.org", "--json").stdout)
    assert gone["subscriber"]["status"] == "bounced"
    [failed] = gone["failures"]
    assert (failed["state"], failed["smtp_code"]) == ("failed", 550) and "User unknown" in failed["error"]
    assert [b["event"] for b in gone["bounces"]] == ["bounced"]

    # A confirmation the relay refused is in the history too (the journey email's row).
    nobody = json.loads(show("nobody@example.org", "--json").stdout)
    assert nobody["subscriber"]["status"] == "pending"
    assert [(f["kind"], f["smtp_code"]) for f in nobody["failures"]] == [("confirm", 550)]

    text = show("gone@example.org").stdout
    assert "bounced" in text and "550" in text and "User unknown" in text

    missing = show("who@example.org", code=1)
    assert missing.stderr.strip() == "Error: no subscriber with address who@example.org"
