"""Whatever a provider (or someone holding its credentials) sends past the signature check, the
answer is 200 or 400, never a server error, and the database stays consistent: random JSON as
a Postmark record (authenticated), as a Mailgun event (signed), as an SES notification inside a
signed SNS message."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from tests import providerkit as kit
from tests.test_provider_hooks import failed, mailgun_call, postmark_record
from tests.test_security import add_subscriber

FUZZ = hyp_settings(
    max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["fuzz@example.org", "not an address", "a\x00b@example.org", "x@" + "y" * 300]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def field_mutations(base: dict) -> st.SearchStrategy[dict]:
    """`base` with some of its fields replaced by random JSON (shape-aware noise)."""
    return st.dictionaries(st.sampled_from(sorted(base)), json_values, max_size=len(base)).map(
        lambda changes: {**base, **changes}
    )


@pytest.fixture
def client(configure, sqlite_url, tmp_path, sns_key):
    (tmp_path / "sns.pem").write_bytes(kit.self_signed_pem(sns_key))
    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_SES_SNS_TOPIC_ARNS=kit.TOPIC,
        NEWSLETTER_SES_SNS_CERT=str(tmp_path / "sns.pem"),
        NEWSLETTER_MAILGUN_SIGNING_KEY=kit.MAILGUN_KEY,
        NEWSLETTER_POSTMARK_WEBHOOK_USER=kit.POSTMARK_USER,
        NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD=kit.POSTMARK_PASSWORD,
        NEWSLETTER_WEBHOOK_RATE_PER_IP="100000",
    )
    add_subscriber("fuzz@example.org")
    from newsletter.web import create_app

    with TestClient(create_app(settings)) as c:
        yield c


sns_key = kit.sns_key  # the fixture


def test_random_bodies_past_authentication_never_make_a_server_error(client, sns_key):
    answers: list[int] = []

    def post(path: str, body: object, **kwargs) -> None:
        r = client.post(path, content=json.dumps(body), **kwargs)
        answers.append(r.status_code)
        assert r.status_code in (200, 400), (path, body, r.status_code, r.text[:300])

    @FUZZ
    @given(st.one_of(json_values, field_mutations(postmark_record("HardBounce", "fuzz@example.org"))))
    def postmark(body):
        post("/webhooks/postmark", body, auth=(kit.POSTMARK_USER, kit.POSTMARK_PASSWORD))

    @FUZZ
    @given(st.one_of(json_values, field_mutations(failed("fuzz@example.org", "permanent"))))
    def mailgun(event):
        post("/webhooks/mailgun", mailgun_call(event) if isinstance(event, dict) else {"event-data": event})

    bounce = kit.ses_bounce("Permanent", "General", "fuzz@example.org")

    @FUZZ
    @given(st.one_of(json_values, field_mutations(bounce), field_mutations(bounce["bounce"])))
    def ses(notification):
        if isinstance(notification, dict) and "bounceType" in notification:
            notification = {"notificationType": "Bounce", "bounce": notification}
        post("/webhooks/ses", kit.ses_notification(sns_key, notification))

    postmark()
    mailgun()
    ses()
    assert answers.count(200) > 20 and answers.count(400) > 20, answers


def test_json_nested_too_deeply_is_a_400_before_any_signature_is_checked(client):
    """SNS signs inside the body, so the SES endpoint parses it before it knows who sent it:
    60,000 brackets (under the 64 KB body cap) raised RecursionError, a 500 for anyone."""
    deep = b"[" * 60_000
    for path in ("/webhooks/ses", "/webhooks/mailgun", "/webhooks/postmark"):
        r = client.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 401, 403), (path, r.status_code, r.text[:200])
    r = client.post("/webhooks/ses", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.text
