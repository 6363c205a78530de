"""Amazon SES bounce and complaint notifications through SNS, posted to a real uvicorn: signed
with a key of our own whose self-signed certificate is the configured NEWSLETTER_SES_SNS_CERT."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlmodel import col, select

from newsletter.models import ConsentEvent
from newsletter.testing import configured_session, free_port
from tests import providerkit as kit
from tests.providerkit import (
    TOPIC,
    bounce_records,
    log_text,
    post_json,
    rsa_key,
    ses_bounce,
    ses_complaint,
    ses_notification,
    signed_sns,
    sns_time,
)
from tests.test_security import add_subscriber, snapshot, sub_row

hooks, sns_key, web = kit.hooks, kit.sns_key, kit.web  # the fixtures
SNS = "text/plain; charset=UTF-8"  # what SNS sends its JSON as


def status(sub_id: int) -> str:
    return sub_row(sub_id).status.value


def consent_wording(sub_id: int) -> list[str]:
    with configured_session() as session:
        rows = session.exec(select(ConsentEvent).where(col(ConsentEvent.subscriber_id) == sub_id))
        return [f"{e.event} {e.wording or ''}" for e in rows]


VALIDATED = "Successfully validated SNS topic for Amazon SES event publishing."


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounces_and_complaints_change_exactly_the_readers_named(web, sns_key, version):
    v = version
    gone, also_gone = add_subscriber(f"gone{v}@example.org"), add_subscriber(f"also-gone{v}@example.org")
    full, unsure = add_subscriber(f"full{v}@example.org"), add_subscriber(f"unsure{v}@example.org")
    angry, bystander = add_subscriber(f"angry{v}@example.org"), add_subscriber(f"stays{v}@example.org")

    def deliver(ses: dict, subject: str | None = None) -> dict:
        r = post_json(web, "/webhooks/ses", ses_notification(sns_key, ses, v, subject), SNS)
        assert r.status_code == 200, r.text
        return r.json()

    # one event per recipient: both readers of one Permanent bounce are bounced
    bounce = ses_bounce("Permanent", "NoEmail", f"GONE{v}@example.org", f"also-gone{v}@example.org")
    assert deliver(bounce) == {"status": "ok", "events": 2, "ignored": 0}
    assert (
        deliver(ses_bounce("Transient", "MailboxFull", f"full{v}@example.org", status="4.2.2"))["events"] == 1
    )
    assert deliver(ses_bounce("Undetermined", "Undetermined", f"unsure{v}@example.org"))["events"] == 1
    assert (
        deliver(ses_complaint(f"angry{v}@example.org"), "Amazon SES Email Event Notification")["events"] == 1
    )
    # A "not-spam" report (the ARF Feedback-Type SES passes on) unsubscribed and suppressed.
    not_spam = ses_complaint(f"stays{v}@example.org")
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert deliver(not_spam) == {"status": "ok", "events": 0, "ignored": 1}
    # SES's set-up message is plain text, not JSON: it got a 400 (and SNS retries those)
    validated = signed_sns(sns_key, {"Type": "Notification", "Message": VALIDATED}, v)
    answer = post_json(web, "/webhooks/ses", validated, SNS)
    assert (answer.status_code, answer.json()["ignored"]) == (200, 1)
    delivery = {"notificationType": "Delivery", "delivery": {"recipients": [f"stays{v}@example.org"]}}
    assert deliver(delivery) == {"status": "ok", "events": 0, "ignored": 1}

    assert [status(s) for s in (gone, also_gone)] == ["bounced", "bounced"]
    assert [status(s) for s in (full, unsure, bystander)] == ["confirmed"] * 3
    assert status(angry) == "unsubscribed"
    assert bounce_records(gone) == [("hard", "5.1.1", "ses", "bounced")]
    assert bounce_records(full) == [("soft", "4.2.2", "ses", "scored")]
    assert bounce_records(unsure) == [("soft", "5.1.1", "ses", "scored")]
    assert bounce_records(angry) == [("complaint", "", "ses", "unsubscribed")]
    assert bounce_records(bystander) == []
    # the bounce sub-type and the remote server's words are kept with the reader's record
    assert any("Permanent/NoEmail" in w and "5.1.1" in w for w in consent_wording(gone))
    assert any(w.startswith("unsubscribed:complaint") for w in consent_wording(angry))


def test_ses_answer_is_the_same_for_known_and_unknown_addresses(web, sns_key):
    add_subscriber("known@example.org")
    answers = []
    for address in ("known@example.org", "unknown@example.org"):
        r = post_json(
            web, "/webhooks/ses", ses_notification(sns_key, ses_bounce("Permanent", "General", address)), SNS
        )
        answers.append((r.status_code, r.text))
    assert answers[0] == answers[1] == (200, '{"status":"ok","events":1,"ignored":0}')


def test_forged_foreign_stale_and_malformed_sns_messages_change_nothing(web, hooks, sns_key):
    target = add_subscriber("target@example.org")
    bounce = ses_bounce("Permanent", "General", "target@example.org")
    good = ses_notification(sns_key, bounce)
    tampered = {**good, "Message": json.dumps(ses_bounce("Permanent", "General", "other@example.org"))}
    resigned_elsewhere = ses_notification(rsa_key(), bounce)  # SigningCertURL could name any key
    wrong_topic = signed_sns(
        sns_key,
        {"Type": "Notification", "Message": json.dumps(bounce)},
        topic=TOPIC.replace("bounces", "other"),
    )
    stale = signed_sns(
        sns_key,
        {"Type": "Notification", "Message": json.dumps(bounce), "Timestamp": sns_time(timedelta(hours=-2))},
    )
    future = signed_sns(
        sns_key,
        {"Type": "Notification", "Message": json.dumps(bounce), "Timestamp": sns_time(timedelta(hours=2))},
    )
    before = snapshot(hooks.db_url)
    forbidden = {
        "tampered message": tampered,
        "another key": resigned_elsewhere,
        "wrong topic": wrong_topic,
        "stale": stale,
        "from the future": future,
        "signature version 3": {**good, "SignatureVersion": "3"},
        "signature version 2 claimed for a SHA1 signature": {**good, "SignatureVersion": "2"},
        "signature not base64": {**good, "Signature": "not base64 at all!"},
        "no signature": {**good, "Signature": ""},
        "a timestamp that is not a time": signed_sns(
            sns_key, {"Type": "Notification", "Message": json.dumps(bounce), "Timestamp": "soon"}
        ),
    }
    for name, message in forbidden.items():
        r = post_json(web, "/webhooks/ses", message, SNS)
        assert r.status_code == 403, (name, r.text)
    malformed = {
        "not JSON": b"{not json",
        "not UTF-8": b"\xff\xfe{}",
        "a list": b"[]",
        "no type": json.dumps({k: v for k, v in good.items() if k != "Type"}).encode(),
        "no signature field": json.dumps({k: v for k, v in good.items() if k != "Signature"}).encode(),
    }
    for name, body in malformed.items():
        r = post_json(web, "/webhooks/ses", body, SNS)
        assert r.status_code == 400, (name, r.text)
    assert snapshot(hooks.db_url) == before
    assert status(target) == "confirmed"
    reasons = {
        json.loads(line).get("reason")
        for line in log_text(hooks.log).splitlines()
        if "provider.refused" in line
    }
    assert {"unknown topic", "stale timestamp", "bad signature"} <= reasons
    # the real message still works afterwards
    assert post_json(web, "/webhooks/ses", good, SNS).status_code == 200
    assert status(target) == "bounced"


def test_a_signed_message_whose_ses_body_is_not_a_notification_is_a_400(web, sns_key):
    # (A message in plain words is SES's own, such as its set-up message: ignored, see above.)
    for message in ("{not json", json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": 1}})):
        r = post_json(
            web, "/webhooks/ses", signed_sns(sns_key, {"Type": "Notification", "Message": message}), SNS
        )
        assert r.status_code == 400, r.text


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_subscription_confirmation_is_logged_for_the_operator_and_nothing_is_fetched(web, hooks, sns_key):
    server = HTTPServer(("127.0.0.1", free_port()), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    here = f"http://127.0.0.1:{server.server_port}"
    subscribe_url = (
        f"{here}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464d"
    )
    confirmation = signed_sns(
        sns_key,
        {
            "Type": "SubscriptionConfirmation",
            "Token": "2336412f37fb687f5d51e6e2425c464d",
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, "
            "visit the SubscribeURL included in this message.",
            "SubscribeURL": subscribe_url,
            "SigningCertURL": f"{here}/SimpleNotificationService.pem",
        },
        version="2",
    )
    try:
        r = post_json(web, "/webhooks/ses", confirmation, SNS)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok", "events": 0, "ignored": 1}
        lines = [json.loads(line) for line in log_text(hooks.log).splitlines() if '"event": "sns.' in line]
        assert lines and lines[-1]["subscribe_url"] == subscribe_url and lines[-1]["topic"] == TOPIC
        assert lines[-1]["event"] == "sns.subscription_confirmation" and lines[-1]["level"] == "warning"
        forged = {**confirmation, "SubscribeURL": f"{here}/evil"}
        assert post_json(web, "/webhooks/ses", forged, SNS).status_code == 403
        assert _Recorder.hits == []  # neither the SubscribeURL nor the SigningCertURL was fetched
    finally:
        server.shutdown()


def test_first_setup_with_topics_alone_refuses_every_message_and_logs_its_certificate_url(
    configure, sqlite_url, tmp_path, sns_key
):
    """README's setup: with the topic set and no certificate yet, the SubscriptionConfirmation
    is refused (403) and the log names the SigningCertURL for the operator to download; with
    that certificate saved, the same message is accepted and its SubscribeURL logged."""
    import logging

    from fastapi.testclient import TestClient

    from newsletter.web import create_app

    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("newsletter").addHandler(handler)
    confirmation = signed_sns(
        sns_key,
        {
            "Type": "SubscriptionConfirmation",
            "Token": "2336412f37fb687f5d51e6e2425c464d",
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
            "SubscribeURL": f"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}",
        },
    )
    try:
        settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SES_SNS_TOPIC_ARNS=TOPIC)
        with TestClient(create_app(settings)) as client:
            assert client.post("/webhooks/ses", content=json.dumps(confirmation)).status_code == 403
        refused = [r for r in seen if r.getMessage() == "provider.refused"]
        assert refused[-1].reason == "no certificate configured"  # type: ignore[attr-defined]
        assert refused[-1].signing_cert_url == confirmation["SigningCertURL"]  # type: ignore[attr-defined]

        (tmp_path / "sns.pem").write_bytes(kit.self_signed_pem(sns_key))
        settings = configure(
            NEWSLETTER_DATABASE_URL=sqlite_url,
            NEWSLETTER_SES_SNS_TOPIC_ARNS=TOPIC,
            NEWSLETTER_SES_SNS_CERT=str(tmp_path / "sns.pem"),
        )
        with TestClient(create_app(settings)) as client:
            assert client.post("/webhooks/ses", content=json.dumps(confirmation)).status_code == 200
        confirmed = [r for r in seen if r.getMessage() == "sns.subscription_confirmation"]
        assert confirmed[-1].subscribe_url == confirmation["SubscribeURL"]  # type: ignore[attr-defined]
    finally:
        logging.getLogger("newsletter").removeHandler(handler)


def test_a_rotated_sns_certificate_is_added_to_the_file_without_a_restart(web, hooks, sns_key):
    reader = add_subscriber("rotated@example.org")
    new_key = rsa_key()
    message = ses_notification(new_key, ses_bounce("Permanent", "General", "rotated@example.org"), "2")
    assert post_json(web, "/webhooks/ses", message, SNS).status_code == 403
    assert status(reader) == "confirmed"
    original = hooks.cert.read_bytes()
    try:
        hooks.cert.write_bytes(original + kit.self_signed_pem(new_key))
        assert post_json(web, "/webhooks/ses", message, SNS).status_code == 200
        assert status(reader) == "bounced"
        other = add_subscriber("old-key@example.org")  # the old certificate still counts
        old = ses_notification(sns_key, ses_bounce("Permanent", "General", "old-key@example.org"))
        assert post_json(web, "/webhooks/ses", old, SNS).status_code == 200
        assert status(other) == "bounced"
    finally:
        hooks.cert.write_bytes(original)


def test_an_event_naming_our_message_counts_for_its_issue_and_once(web, sns_key):
    """SES passes on our Message-ID (`mail.commonHeaders.messageId`). Provider events were tied
    to the address only: `issues show` and /metrics left them out, the ledger row never said
    "bounced after 250", and a replay was not caught by the (delivery, kind) index."""
    from newsletter.bounces.reports import bounce_counts
    from newsletter.models import BounceRecord, Delivery, DeliveryState, Frequency, Issue, utcnow

    reader = add_subscriber("counted@example.org")
    with configured_session() as session:
        issue = Issue(
            frequency=Frequency.weekly, period="2026-W49", title="Week 49", paper_ids=[], created_at=utcnow()
        )
        session.add(issue)
        session.flush()
        row = Delivery(
            issue_id=issue.id,
            subscriber_id=reader,
            state=DeliveryState.sent,
            message_id="<d.42@news.example.org>",
        )
        session.add(row)
        session.flush()
        issue_id, delivery_id = issue.id, row.id
    event = ses_bounce("Permanent", "General", "counted@example.org")
    event["mail"]["commonHeaders"] = {"messageId": "<d.42@news.example.org>", "subject": "Paper Digest"}
    for _ in range(2):  # SNS delivers it twice
        r = post_json(web, "/webhooks/ses", ses_notification(sns_key, event), SNS)
        assert r.status_code == 200, r.text
    with configured_session() as session:
        records = session.exec(select(BounceRecord).where(col(BounceRecord.subscriber_id) == reader)).all()
        assert [(b.delivery_id, b.issue_id, b.kind.value) for b in records] == [
            (delivery_id, issue_id, "hard")
        ]
        assert bounce_counts(session, issue_id)["hard"] == 1
        assert session.get(Delivery, delivery_id).error.startswith("bounced after 250: hard 5.1.1")
