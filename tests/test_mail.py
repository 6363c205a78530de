"""Message building: structure, headers, encodings, DKIM, and SpamAssassin's verdict."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess

import pytest

from newsletter.mail.message import Envelope, build_message, dkim_sign, new_message_id
from newsletter.mail.render import render_email
from newsletter.mail.transactional import transactional_message
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.testing import dkim_test_key


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def body(msg: email.message.EmailMessage, kind: str) -> str:
    """A part's text with line ends as a mail client shows them."""
    return msg.get_body((kind,)).get_content().replace("\r\n", "\n")


def envelope(**kw) -> Envelope:
    base = {
        "mail_from": "Paper Digest <digest@news.example.org>",
        "to": "ada@example.org",
        "subject": "Hello",
        "message_id": new_message_id("news.example.org", "t.1"),
        "headers": {"List-Id": "Paper Digest <digest.news.example.org>"},
    }
    return Envelope(**{**base, **kw})


def spam_score(raw: bytes) -> float:
    if shutil.which("spamassassin") is None:
        pytest.fail("spamassassin is not installed (apt-get install spamassassin; .ci/run does)")
    out = subprocess.run(
        ["spamassassin", "-L", "-t"], input=raw, capture_output=True, timeout=120
    ).stdout.decode("utf-8", "replace")
    line = next(ln for ln in out.splitlines() if ln.startswith("X-Spam-Status:"))
    return float(line.split("score=")[1].split()[0])


@pytest.fixture
def sub():
    return Subscriber(
        id=7,
        email="ada@example.org",
        email_key="ada@example.org",
        status=SubscriberStatus.pending,
        interests="robot learning",
        token_version=0,
    )


def test_multipart_alternative_text_then_html_with_required_headers():
    raw = build_message(envelope(), "plain body\n", "<p>html body</p>")
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id"):
        assert msg[header], header
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert body(msg, "plain") == "plain body\n"
    # RFC 5322 3.3: a numeric zone; "GMT" is obsolete syntax a generator must not produce
    date = re.search(rb"^Date: (.*?)\r$", raw, re.M)
    assert date and re.fullmatch(
        rb"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000", date[1]
    )


def test_unicode_and_long_lines_survive_the_round_trip():
    text = "Café “quotes” — ünïcode 数学 " + "word " * 200 + "\n.leading dot\n"
    html = "<p>" + "x" * 5000 + " é</p>"
    msg = parse(build_message(envelope(subject="Résumé of the week — 数学"), text, html))
    assert str(msg["Subject"]) == "Résumé of the week — 数学"
    assert body(msg, "plain") == text
    assert body(msg, "html") == html
    assert all(len(line) <= 998 for line in build_message(envelope(), text, html).split(b"\r\n"))


def test_header_injection_is_refused():
    with pytest.raises(ValueError):
        build_message(envelope(subject="hi\r\nBcc: victim@example.org"), "t", "h")
    with pytest.raises(ValueError):
        build_message(envelope(to="a@example.org\r\nBcc: v@example.org"), "t", "h")


def test_html_has_inlined_css_and_escapes_input(configure, sub):
    settings = configure()
    sub.interests = "<script>alert(1)</script>"
    sub.status = SubscriberStatus.confirmed
    msg = parse(transactional_message(settings, "welcome", sub))
    html = body(msg, "html")
    assert 'style="' in html and "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<script>alert(1)</script>" in body(msg, "plain")


@pytest.mark.parametrize(
    "kind,status",
    [
        ("confirm", SubscriberStatus.pending),
        ("welcome", SubscriberStatus.confirmed),
        ("already_subscribed", SubscriberStatus.confirmed),
    ],
)
def test_journey_emails_score_low_in_spamassassin(configure, sub, kind, status):
    settings = configure()
    sub.status = status
    raw = transactional_message(settings, kind, sub)
    assert spam_score(raw) <= 1.0


def test_every_email_template_compiles_and_text_matches_html(configure):
    settings = configure()
    context = {
        "email": "a@example.org",
        "base_url": "https://x.org",
        "interests": "ml",
        "confirm_hours": 72,
        "next_digest": "on Monday",
        "period": "week",
        "cadence": "weekly",
        "confirm_url": "https://x.org/c/1",
        "preferences_url": "https://x.org/p/1",
        "unsubscribe_url": "https://x.org/u/1",
    }
    for name in ("confirm", "welcome", "already_subscribed"):
        rendered = render_email(settings, name, context)
        for url in ("https://x.org/c/1", "https://x.org/p/1", "https://x.org/u/1"):
            assert (url in rendered.text) == (url in rendered.html), (name, url)


def test_dkim_signature_verifies_and_covers_one_click_headers(tmp_path, configure, sub):
    dkim = pytest.importorskip("dkim")
    record = dkim_test_key(tmp_path / "dkim.pem")
    settings = configure(
        NEWSLETTER_DKIM_SELECTOR="pd",
        NEWSLETTER_DKIM_DOMAIN="news.example.org",
        NEWSLETTER_DKIM_PRIVATE_KEY_PATH=str(tmp_path / "dkim.pem"),
    )
    sub.status = SubscriberStatus.confirmed
    raw = transactional_message(settings, "welcome", sub)
    assert raw.startswith(b"DKIM-Signature:")
    signed_headers = raw.split(b"h=", 1)[1].split(b";", 1)[0].replace(b"\r\n", b"").replace(b" ", b"")
    for header in (b"from", b"list-unsubscribe", b"list-unsubscribe-post"):
        assert header in signed_headers.split(b":")
    dns = lambda name, timeout=5: record if name == b"pd._domainkey.news.example.org." else None  # noqa: E731
    assert dkim.verify(raw, dnsfunc=dns)
    assert not dkim.verify(
        raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nothing"),
        dnsfunc=dns,
    )


def test_dkim_sign_directly_signs_present_headers_only(tmp_path):
    pytest.importorskip("dkim")
    dkim_test_key(tmp_path / "k.pem")
    raw = dkim_sign(
        build_message(envelope(headers={}), "t", "h"),
        selector="s",
        domain="news.example.org",
        key_path=tmp_path / "k.pem",
    )
    assert b"list-unsubscribe" not in raw.split(b"\r\n\r\n", 1)[0].lower().split(b"h=")[1][:200]
