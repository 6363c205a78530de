"""What the provider webhook tests share: one real uvicorn with every provider configured
(PostgreSQL, Redis for Mailgun's single-use tokens), a self-signed SNS certificate, and
SNS messages signed the way SNS signs them."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import WebServer, migrated_pg, own_redis_db, process_env

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "postmark-password-0123456789"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_pem(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.eu-west-1.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def sns_time(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def signed_sns(
    key: rsa.RSAPrivateKey, fields: dict[str, Any], version: str = "1", topic: str = TOPIC
) -> dict[str, Any]:
    """An SNS message as SNS sends it: `fields` plus the envelope, signed over the canonical
    string of its type (AWS "Verifying the signatures of Amazon SNS messages")."""
    message = {
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Timestamp": sns_time(),
        "SignatureVersion": version,
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
        **fields,
    }
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    canonical = "".join(f"{n}\n{message[n]}\n" for n in names if n in message).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(canonical, padding.PKCS1v15(), digest)).decode()
    return message


def ses_notification(
    key: rsa.RSAPrivateKey, ses: dict[str, Any], version: str = "1", subject: str | None = None
) -> dict[str, Any]:
    """A signed SNS Notification carrying `ses`; with a `Subject` (signed too) if given."""
    fields = {"Type": "Notification", "Message": json.dumps(ses)}
    return signed_sns(key, fields | ({"Subject": subject} if subject else {}), version)


def ses_bounce(bounce_type: str, sub_type: str, *addresses: str, status: str = "5.1.1") -> dict[str, Any]:
    """An SES bounce notification in the shape of AWS's documented example."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "feedbackId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {
                    "emailAddress": a,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} <{a}>: Recipient address rejected",
                }
                for a in addresses
            ],
            "timestamp": sns_time(),
            "remoteMtaIp": "127.0.2.0",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": sns_time(),
            "source": "digest@news.example.org",
            "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/news.example.org",
            "sendingAccountId": "123456789012",
            "messageId": "00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000",
            "destination": list(addresses),
        },
    }


def ses_complaint(*addresses: str) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": a} for a in addresses],
            "complaintFeedbackType": "abuse",
            "arrivalDate": sns_time(),
            "timestamp": sns_time(),
            "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        },
        "mail": {
            "timestamp": sns_time(),
            "source": "digest@news.example.org",
            "destination": list(addresses),
        },
    }


@pytest.fixture(scope="module")
def sns_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def hooks(sns_key, tmp_path_factory):
    """A uvicorn serving the app with SES, Mailgun and Postmark configured, on its own
    PostgreSQL database and Redis database; the test process's settings name the same ones."""
    folder = tmp_path_factory.mktemp("hooks")
    (folder / "sns.pem").write_bytes(self_signed_pem(sns_key))
    # Not flushed: the tokens are random, and the database may be another test run's broker.
    redis_url = own_redis_db(2)
    with migrated_pg() as db_url:
        env = process_env(
            NEWSLETTER_DATABASE_URL=db_url,
            NEWSLETTER_REDIS_URL=redis_url,
            NEWSLETTER_SES_SNS_CERT=str(folder / "sns.pem"),
            NEWSLETTER_SES_SNS_TOPIC_ARNS=f"arn:aws:sns:us-east-1:123456789012:other, {TOPIC}",
            NEWSLETTER_MAILGUN_SIGNING_KEY=MAILGUN_KEY,
            NEWSLETTER_POSTMARK_WEBHOOK_USER=POSTMARK_USER,
            NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD=POSTMARK_PASSWORD,
        )
        web = WebServer(env, folder / "web.log")
        try:
            yield type(
                "Hooks",
                (),
                {
                    "url": web.url,
                    "env": env,
                    "db_url": db_url,
                    "log": folder / "web.log",
                    "cert": folder / "sns.pem",
                },
            )
        finally:
            web.stop()


@pytest.fixture
def web(hooks, configure):
    """An HTTP client for the hooks server; this test's settings point at its database."""
    configure(NEWSLETTER_DATABASE_URL=hooks.db_url)
    with httpx.Client(base_url=hooks.url, timeout=10) as client:
        yield client


def post_json(
    web: httpx.Client, path: str, value: Any, content_type: str = "application/json", **kwargs: Any
) -> httpx.Response:
    """POST a JSON value (bytes as they are); SNS sends its JSON as text/plain."""
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return web.post(path, content=body, headers={"content-type": content_type}, **kwargs)


def log_text(path: Path) -> str:
    return path.read_text(errors="replace")


def bounce_records(sub_id: int) -> list[tuple[str, str, str, str]]:
    """(kind, status, source, effect) of each bounce event recorded about a reader, in order."""
    from sqlmodel import col, select

    from newsletter.models import BounceRecord
    from newsletter.testing import configured_session

    with configured_session() as session:
        rows = session.exec(
            select(BounceRecord)
            .where(col(BounceRecord.subscriber_id) == sub_id)
            .order_by(col(BounceRecord.id))
        )
        return [(r.kind.value, r.status, r.source, r.effect) for r in rows]
