"""Mailgun and Postmark event webhooks posted to a real uvicorn, and every provider endpoint
closed (404) until it is configured. SES has its own file (test_provider_ses.py)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter.bounces.providers.mailgun import expected_signature
from newsletter.config import ConfigError
from newsletter.models import BounceRecord, Delivery, Frequency, Issue, utcnow
from newsletter.testing import configured_session
from tests import providerkit as kit
from tests.conftest import PRODUCTION_ENV
from tests.providerkit import MAILGUN_KEY, POSTMARK_PASSWORD, POSTMARK_USER, bounce_records, post_json
from tests.test_security import add_subscriber, snapshot, sub_row

hooks, sns_key, web = kit.hooks, kit.sns_key, kit.web  # the fixtures
PATHS = ("/webhooks/ses", "/webhooks/mailgun", "/webhooks/postmark")


def status(sub_id: int) -> str:
    return sub_row(sub_id).status.value


# ---- Mailgun --------------------------------------------------------------------------------


def mailgun_call(event: dict[str, Any], key: str = MAILGUN_KEY, age: int = 0, token: str = "") -> dict:
    """A Mailgun webhook body in the documented shape, signed with `key`."""
    token = token or secrets.token_hex(25)
    stamp = str(int(time.time()) - age)
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": expected_signature(key, stamp, token)},
        "event-data": {
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": time.time(),
            "log-level": "error",
            "envelope": {"sender": "digest@news.example.org", "transport": "smtp"},
            "message": {"headers": {"message-id": "20260101.1234@news.example.org"}},
            **event,
        },
    }


def failed(address: str, severity: str, code: int = 550, enhanced: str = "5.1.1") -> dict[str, Any]:
    return {
        "event": "failed",
        "severity": severity,
        "reason": "bounce" if severity == "permanent" else "generic",
        "recipient": address,
        "delivery-status": {
            "attempt-no": 1,
            "code": code,
            "enhanced-code": enhanced,
            "message": f"{code} {enhanced} The email account that you tried to reach does not exist.",
            "description": "",
        },
    }


def test_mailgun_events_change_exactly_the_readers_named(web):
    gone, busy = add_subscriber("mg-gone@example.org"), add_subscriber("mg-busy@example.org")
    angry, leaving = add_subscriber("mg-angry@example.org"), add_subscriber("mg-leaving@example.org")
    happy = add_subscriber("mg-happy@example.org")
    listed = add_subscriber("mg-listed@example.org")  # our server on a blocklist, their mailbox fine

    def deliver(event: dict[str, Any]) -> dict:
        r = post_json(web, "/webhooks/mailgun", mailgun_call(event))
        assert r.status_code == 200, r.text
        return r.json()

    gone_event = failed("mg-gone@example.org", "permanent")
    gone_event["message"] = {"headers": {"message-id": "d.7@news.example.org"}}  # Mailgun drops the <>
    with configured_session() as session:  # the digest that bounced, as the ledger holds it
        issue = Issue(
            frequency=Frequency.weekly, period="2026-W49", title="W49", paper_ids=[], created_at=utcnow()
        )
        session.add(issue)
        session.flush()
        row = Delivery(issue_id=issue.id, subscriber_id=gone, message_id="<d.7@news.example.org>")
        session.add(row)
        session.flush()
        gone_delivery = row.id
    assert deliver(gone_event) == {"status": "ok", "events": 1, "ignored": 0}
    # One attempt that Mailgun retries: counted as soft, greylisting bounced readers in weeks.
    assert deliver(failed("mg-busy@example.org", "temporary", 451, "4.7.1"))["ignored"] == 1
    assert deliver(failed("mg-busy@example.org", "temporary", 452, "4.2.2"))["ignored"] == 1
    # A Spamhaus listing, which Mailgun calls permanent: a refusal by policy, as in a DSN.
    assert deliver(failed("mg-listed@example.org", "permanent", 550, "5.7.1"))["events"] == 1
    assert deliver({"event": "complained", "recipient": "mg-angry@example.org"})["events"] == 1
    assert deliver({"event": "unsubscribed", "recipient": "mg-leaving@example.org"})["events"] == 1
    for ignored in ("delivered", "opened", "clicked", "accepted"):
        assert deliver({"event": ignored, "recipient": "mg-happy@example.org"})["ignored"] == 1

    assert [status(s) for s in (gone, busy, angry, leaving, happy, listed)] == [
        "bounced",
        "confirmed",
        "unsubscribed",
        "unsubscribed",
        "confirmed",
        "confirmed",
    ]
    assert bounce_records(gone) == [("hard", "5.1.1", "mailgun", "bounced")]
    with configured_session() as session:  # tied to its delivery: the issue counts it
        [record] = session.exec(select(BounceRecord).where(BounceRecord.subscriber_id == gone)).all()
        assert record.delivery_id == gone_delivery
    assert bounce_records(busy) == []
    assert [r[:2] for r in bounce_records(listed)] == [("policy", "5.7.1")]
    assert bounce_records(angry) == [("complaint", "", "mailgun", "unsubscribed")]
    assert bounce_records(leaving) == [("unsubscribe", "", "mailgun", "unsubscribed")]
    assert bounce_records(happy) == []


def test_mailgun_refuses_forged_stale_and_replayed_calls_and_changes_nothing(web, hooks):
    target = add_subscriber("mg-target@example.org")
    event = failed("mg-target@example.org", "permanent")
    good = mailgun_call(event)
    before = snapshot(hooks.db_url)
    forbidden = {
        "another key": mailgun_call(event, key="key-someone-else-0123456789abcdef"),
        "stale": mailgun_call(event, age=3600),
        "from the future": mailgun_call(event, age=-3600),
        "signature of another token": {**good, "signature": {**good["signature"], "token": "x" * 50}},
        "empty signature": {**good, "signature": {**good["signature"], "signature": ""}},
    }
    for name, body in forbidden.items():
        r = post_json(web, "/webhooks/mailgun", body)
        assert r.status_code == 403, (name, r.text)
    for name, raw in {
        "not JSON": b"{not json",
        "no signature": json.dumps({"event-data": event}).encode(),
        "no event-data": json.dumps({"signature": good["signature"]}).encode(),
        "a list": b"[]",
    }.items():
        r = post_json(web, "/webhooks/mailgun", raw)
        assert r.status_code == 400, (name, r.text)
    assert snapshot(hooks.db_url) == before

    assert post_json(web, "/webhooks/mailgun", good).status_code == 200
    assert status(target) == "bounced"
    # the same signed call again, and its token under a new event: both replays
    assert post_json(web, "/webhooks/mailgun", good).status_code == 403
    other = add_subscriber("mg-other@example.org")
    reused = mailgun_call(failed("mg-other@example.org", "permanent"), token=good["signature"]["token"])
    assert post_json(web, "/webhooks/mailgun", reused).status_code == 403
    assert status(other) == "confirmed"
    # the token is remembered in the shared Redis, so another web process refuses it too
    store = redis.Redis.from_url(hooks.env["NEWSLETTER_REDIS_URL"])
    assert store.ttl(f"newsletter:webhook-token:{good['signature']['token']}") > 900


# ---- Postmark -------------------------------------------------------------------------------


def postmark_record(
    kind: str, address: str, record_type: str = "Bounce", type_code: int = 1
) -> dict[str, Any]:
    """A Postmark bounce (or spam complaint) webhook body in the documented shape."""
    return {
        "RecordType": record_type,
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": type_code,
        "Name": kind,
        "Tag": "digest",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 23,
        "MessageStream": "broadcast",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": address,
        "From": "digest@news.example.org",
        "BouncedAt": "2026-11-30T16:33:54.9070259Z",
        "DumpAvailable": False,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Your papers this week",
    }


POSTMARK_AUTH = (POSTMARK_USER, POSTMARK_PASSWORD)


def test_postmark_bounces_and_complaints_with_basic_auth(web, hooks):
    readers = {
        kind: add_subscriber(f"pm-{kind.lower()}@example.org")
        for kind in ("HardBounce", "BadEmailAddress", "SoftBounce", "Transient", "Blocked", "AutoResponder")
    }
    angry, leaving = add_subscriber("pm-angry@example.org"), add_subscriber("pm-leaving@example.org")

    def deliver(body: dict[str, Any]) -> dict:
        r = post_json(web, "/webhooks/postmark", body, auth=POSTMARK_AUTH)
        assert r.status_code == 200, r.text
        return r.json()

    for kind in readers:
        deliver(postmark_record(kind, f"pm-{kind.lower()}@example.org"))
    listed = add_subscriber("pm-listed@example.org")
    spamhaus = {"Details": "smtp;550 5.7.1 Service unavailable; client host blocked using Spamhaus"}
    deliver(postmark_record("HardBounce", "pm-listed@example.org") | spamhaus)
    deliver(postmark_record("SpamComplaint", "pm-angry@example.org", "SpamComplaint", 512))
    deliver(postmark_record("Unsubscribe", "pm-leaving@example.org", type_code=16))
    assert deliver({"RecordType": "Delivery", "Recipient": "pm-hardbounce@example.org"}) == {
        "status": "ok",
        "events": 0,
        "ignored": 1,
    }

    assert {k: status(s) for k, s in readers.items()} == {
        "HardBounce": "bounced",
        "BadEmailAddress": "bounced",
        "SoftBounce": "confirmed",
        "Transient": "confirmed",
        "Blocked": "confirmed",  # policy: about our mail, never against the reader
        "AutoResponder": "confirmed",
    }
    assert [status(angry), status(leaving)] == ["unsubscribed", "unsubscribed"]
    assert [r[0] for r in bounce_records(readers["SoftBounce"])] == ["soft"]
    assert [r[0] for r in bounce_records(readers["Blocked"])] == ["policy"]
    assert (status(listed), [r[0] for r in bounce_records(listed)]) == ("confirmed", ["policy"])
    assert bounce_records(readers["AutoResponder"]) == []
    assert bounce_records(readers["HardBounce"]) == [("hard", "5.1.1", "postmark", "bounced")]

    target = add_subscriber("pm-target@example.org")
    body = postmark_record("HardBounce", "pm-target@example.org")
    before = snapshot(hooks.db_url)
    for auth in (None, (POSTMARK_USER, "wrong-password-0123456789"), ("someone", POSTMARK_PASSWORD)):
        r = post_json(web, "/webhooks/postmark", body, auth=auth)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), r.text
    for raw in (b"{not json", b"[]", json.dumps({**body, "Email": None}).encode()):
        assert post_json(web, "/webhooks/postmark", raw, auth=POSTMARK_AUTH).status_code == 400
    assert snapshot(hooks.db_url) == before
    assert status(target) == "confirmed"


def test_answers_are_the_same_for_known_and_unknown_addresses(web):
    add_subscriber("pm-known@example.org")
    add_subscriber("mg-known@example.org")
    for who in ("known", "unknown"):
        pm = post_json(
            web,
            "/webhooks/postmark",
            postmark_record("HardBounce", f"pm-{who}@example.org"),
            auth=POSTMARK_AUTH,
        )
        mg = post_json(web, "/webhooks/mailgun", mailgun_call(failed(f"mg-{who}@example.org", "permanent")))
        assert (
            (pm.status_code, pm.text)
            == (mg.status_code, mg.text)
            == (200, '{"status":"ok","events":1,"ignored":0}')
        )


# ---- configuration --------------------------------------------------------------------------


def test_every_provider_endpoint_is_404_until_configured(configure, sqlite_url, tmp_path):
    (tmp_path / "sns.pem").write_bytes(kit.self_signed_pem(kit.rsa_key()))
    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SES_SNS_CERT=str(tmp_path / "sns.pem")
    )
    with TestClient(create_app_for(settings)) as client:
        unknown = client.post("/webhooks/nothing-here", json={})
        for path in PATHS:
            r = client.post(path, json={}, auth=POSTMARK_AUTH)
            assert (r.status_code, r.text) == (404, unknown.text), path
    # a certificate without topics accepts nothing; half of Postmark's credentials neither
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_POSTMARK_WEBHOOK_USER=POSTMARK_USER)
    with TestClient(create_app_for(settings)) as client:
        assert client.post("/webhooks/postmark", json={}, auth=POSTMARK_AUTH).status_code == 404


def test_an_unreadable_sns_certificate_or_short_credentials_stop_the_app(configure, sqlite_url, tmp_path):
    (tmp_path / "not.pem").write_text("not a certificate")
    for path in (tmp_path / "missing.pem", tmp_path / "not.pem"):
        settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SES_SNS_CERT=str(path))
        with pytest.raises(ConfigError, match="NEWSLETTER_SES_SNS_CERT"):
            create_app_for(settings)
    for name in ("NEWSLETTER_MAILGUN_SIGNING_KEY", "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD"):
        settings = configure(
            NEWSLETTER_DATABASE_URL=sqlite_url,
            NEWSLETTER_MODE="production",
            **PRODUCTION_ENV,
            **{name: "short"},
        )
        with pytest.raises(ConfigError, match=name):
            create_app_for(settings)


def create_app_for(settings):
    from newsletter.web import create_app

    return create_app(settings)


def test_provider_secrets_are_compared_in_constant_time(configure, sqlite_url, monkeypatch):
    """Mailgun's signature and both of Postmark's credentials go through hmac.compare_digest,
    whether they are right or wrong: no early-exit comparison leaks a right prefix."""
    import hmac

    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_MAILGUN_SIGNING_KEY=MAILGUN_KEY,
        NEWSLETTER_POSTMARK_WEBHOOK_USER=POSTMARK_USER,
        NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD=POSTMARK_PASSWORD,
    )
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    body = mailgun_call(failed("nobody@example.org", "permanent"))
    with TestClient(create_app_for(settings)) as client:
        forged = {**body, "signature": {**body["signature"], "signature": "0" * 64}}
        assert client.post("/webhooks/mailgun", json=forged).status_code == 403 and calls == [1]
        calls.clear()
        assert client.post("/webhooks/mailgun", json=body).status_code == 200 and calls == [1]
        for auth, answer in ((("postmark", "wrong"), 401), (POSTMARK_AUTH, 200)):
            calls.clear()
            r = client.post(
                "/webhooks/postmark", json=postmark_record("HardBounce", "x@example.org"), auth=auth
            )
            assert r.status_code == answer and calls == [1, 1]


def test_mailgun_calls_wait_with_503_while_the_token_store_does_not_answer(configure, sqlite_url):
    """No Redis to remember tokens in: the call is neither accepted unchecked nor refused for
    good, so Mailgun retries it later; nothing changes meanwhile."""
    from tests.conftest import free_port

    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_MAILGUN_SIGNING_KEY=MAILGUN_KEY,
        NEWSLETTER_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nobody listens there
    )
    reader = add_subscriber("mg-waits@example.org")
    body = mailgun_call(failed("mg-waits@example.org", "permanent"))
    with TestClient(create_app_for(settings)) as client:
        r = client.post("/webhooks/mailgun", json=body)
    assert r.status_code == 503, r.text
    assert status(reader) == "confirmed"
