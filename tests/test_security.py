"""Bad input and attacks: fuzzing, addresses, escaping, tokens, enumeration, rate limits, safe
GETs, production settings, STARTTLS, DKIM, and the bounce webhook.

The app runs in-process (ASGI) on a throwaway PostgreSQL database where that is enough, and as a
real uvicorn process where the network matters (rate limits under a burst, refusing to start).
See docs/guarantees.md for the promises these tests prove.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hmac
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hyp_settings
from sqlalchemy import create_engine, select, text
from sqlmodel import SQLModel

from newsletter.config import get_settings
from newsletter.testing import queued_journey_emails
from newsletter.tokens import Purpose, make_token
from tests.conftest import (
    PRODUCTION_ENV,
    PRODUCTION_IDENTITY,
    WebServer,
    app_routes,
    free_port,
    link_in,
    process_env,
    text_part,
)
from tests.faultkit import FaultySMTP, PrivateRedis, SMTPServer

HOOK = "hook-secret-0123456789"
METRICS = "metrics-token-0123456789"
ADMIN = "admin-token-0123456789abcdef"
BASE = "https://news.example.org"
TOKEN_TITLES = {
    400: "This link is not valid",
    410: ("This link has expired", "This link has already been used", "This subscription no longer exists"),
}


# ---- helpers --------------------------------------------------------------------------------


def snapshot(db_url: str) -> dict[str, list[tuple]]:
    """Every row of every table, in key order: two equal snapshots mean nothing changed."""
    import newsletter.models  # noqa: F401 - registers the tables

    engine = create_engine(db_url)
    with engine.connect() as conn:
        data = {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key))]
            for t in SQLModel.metadata.sorted_tables
        }
    engine.dispose()
    return data


def outbox(settings) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(Path(settings.outbox_dir).glob("*.eml"))
    ]


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def subscriber_id(address_key: str) -> int | None:
    from newsletter.models import Subscriber
    from newsletter.testing import configured_session

    with configured_session() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email_key == address_key)).first()
        return sub[0].id if sub else None


def add_subscriber(address: str, status: str = "confirmed", interests: str = "agents") -> int:
    from newsletter.models import Subscriber, SubscriberStatus
    from newsletter.testing import configured_session

    with configured_session() as session:
        sub = Subscriber(
            email=address,
            email_key=address.casefold(),
            interests=interests,
            status=SubscriberStatus(status),
            max_papers=5,
        )
        session.add(sub)
        session.flush()
        return sub.id


def sub_row(sub_id: int):
    from newsletter.models import Subscriber
    from newsletter.testing import configured_session

    with configured_session() as session:
        return session.get(Subscriber, sub_id)


def ingest_sample() -> None:
    from newsletter import admin
    from newsletter.papers import sample_feed_path

    admin.ingest(get_settings(), path=sample_feed_path())


@pytest.fixture
def app_settings(configure, pg_url):
    """In-process app on PostgreSQL; jobs run in-process and mail goes to the outbox folder."""
    return configure(
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_WEBHOOK_SECRET=HOOK,
        NEWSLETTER_METRICS_TOKEN=METRICS,
        # HOOK: the fuzzer's one bearer token reaches the admin API too; ADMIN logs in to the pages
        NEWSLETTER_ADMIN_TOKENS=f"{HOOK},{ADMIN}",
        NEWSLETTER_SIGNUP_RATE_PER_IP="100000",
    )


@pytest.fixture
def client(app_settings):
    from newsletter.web import create_app

    with TestClient(create_app(app_settings), base_url=BASE) as c:
        yield c


# ---- fuzzing every operation of the OpenAPI schema ------------------------------------------


def test_fuzz_every_operation_never_answers_5xx(app_settings):
    """Schemathesis generates valid and invalid inputs from the app's own OpenAPI schema for
    every operation (the webhook and the admin API authenticated, so their body parsing is
    reached too), on a store with papers, subscribers and an issue: the answer is never a server error."""
    from hypothesis import given
    from schemathesis.generation.modes import GenerationMode

    from newsletter.ledger import plan_issue
    from newsletter.testing import configured_session
    from newsletter.web import create_app

    ingest_sample()
    add_subscriber("reader@example.org")
    add_subscriber("pending@example.org", status="pending")
    with configured_session() as session:
        plan_issue(session)
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app(app_settings))
    seen, failures = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hyp_settings(
                max_examples=25,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case):
                response = case.call(headers={"Authorization": f"Bearer {HOOK}"})
                seen.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(
                        (
                            case.method,
                            case.formatted_path,
                            case.body,
                            response.status_code,
                            response.text[:300],
                        )
                    )

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - e.g. no negative case can be built
                if "Unsatisfiable" not in type(exc).__name__:
                    raise
    assert not failures, failures[:5]
    assert len(seen) > 300


def test_schema_lists_every_route(client):
    """The fuzzer only reaches what the schema lists: every app route must be in it."""
    paths = client.get("/api/openapi.json").json()["paths"]
    listed = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    routes = {
        (m, r.path)
        for r in app_routes(client.app)
        if hasattr(r, "methods") and r.include_in_schema
        for m in r.methods
        if m != "HEAD"
    }
    assert routes <= listed, routes - listed
    assert len(listed) >= 18


# ---- the bounce / complaint webhook ---------------------------------------------------------


def test_bounce_webhook_hard_bounce_complaint_and_refusals(client, app_settings):
    hard = add_subscriber("hard@example.org")
    complains = add_subscriber("complains@example.org")
    soft = add_subscriber("soft@example.org")
    auth = {"Authorization": f"Bearer {HOOK}"}
    before = snapshot(app_settings.database_url)

    refused = [
        ({}, {"type": "hard_bounce", "email": "hard@example.org"}, 401),
        (
            {"Authorization": "Bearer wrong-secret-0123456789"},
            {"type": "hard_bounce", "email": "hard@example.org"},
            401,
        ),
        ({"Authorization": "Bearer "}, {"type": "hard_bounce", "email": "hard@example.org"}, 401),
        ({"Authorization": f"Basic {HOOK}"}, {"type": "complaint", "email": "hard@example.org"}, 401),
        (auth, {"type": "unsubscribe_everyone", "email": "hard@example.org"}, 422),
        (auth, {"type": "hard_bounce"}, 422),
        (auth, {"type": "hard_bounce", "email": ["hard@example.org"]}, 422),
        (auth, {"type": "hard_bounce", "email": "hard@example.org\r\nx"}, 422),
        (auth, {"type": "hard_bounce", "email": "not an address"}, 422),
        (auth, ["hard_bounce", "hard@example.org"], 422),
        (auth, "hard_bounce", 422),
    ]
    for headers, body, status in refused:
        r = client.post("/webhooks/bounce", json=body, headers=headers)
        assert r.status_code == status, (headers, body, r.text)
    for raw in (b"{not json", b"\xff\xfe", b""):
        r = client.post("/webhooks/bounce", content=raw, headers={**auth, "content-type": "application/json"})
        assert r.status_code == 422
    r = client.post("/webhooks/bounce", content=b"x" * 70_000, headers=auth)
    assert r.status_code == 413
    assert snapshot(app_settings.database_url) == before  # nothing changed

    def event(kind, address, reason="550 5.1.1 user unknown"):
        r = client.post(
            "/webhooks/bounce", json={"type": kind, "email": address, "reason": reason}, headers=auth
        )
        assert r.status_code == 200, r.text
        return r.json()["changed"]

    assert event("hard_bounce", "HARD@example.org") is True
    assert event("hard_bounce", "hard@example.org") is False  # idempotent
    assert event("complaint", "complains@example.org", "abuse report") is True
    assert event("soft_bounce", "soft@example.org", "452 mailbox full") is False
    assert event("hard_bounce", "nobody@example.org") is False
    assert event("hard_bounce", "soft@example.org", "nul \x00 in the reason") is True
    assert sub_row(hard).status.value == "bounced"
    assert sub_row(complains).status.value == "unsubscribed"
    assert sub_row(soft).status.value == "bounced"

    # the next issue goes to nobody of them
    from newsletter.ledger import plan_issue
    from newsletter.testing import configured_session

    ingest_sample()
    add_subscriber("stays@example.org")
    with configured_session() as session:
        _, planned = plan_issue(session)
    assert planned == 1


def test_bounce_webhook_is_closed_without_a_configured_secret(configure, pg_url):
    from newsletter.web import create_app

    settings = configure(NEWSLETTER_DATABASE_URL=pg_url)
    add_subscriber("hard@example.org")
    with TestClient(create_app(settings)) as c:
        for header in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            r = c.post(
                "/webhooks/bounce", json={"type": "hard_bounce", "email": "hard@example.org"}, headers=header
            )
            assert r.status_code == 401
    assert sub_row(subscriber_id("hard@example.org")).status.value == "confirmed"


# ---- addresses ------------------------------------------------------------------------------

BAD_ADDRESSES = [
    "plainaddress",
    "@example.org",
    "ada@",
    "ada@@example.org",
    "ada@example..org",
    "ada@-bad.org",
    "ada example@example.org",
    "<ada@example.org>",
    "Ada <ada@example.org>",
    "ada@example.org, eve@example.org",
    "ada@example.org;eve@example.org",
    '"ada"@example.org',
    "ada@localhost",
    "ada@[127.0.0.1]",
    "ada@example.org>",
    "ada@exam<ple.org",
    # 10,000 characters, in each part
    "x" * 10_000 + "@example.org",
    "ada@" + "a" * 9_990 + ".org",
    "a" * 10_000,
    # line breaks, anywhere, in every spelling, that would start a new header
    "ada@example.org\r\nBcc: victim@example.org",
    "ada@example.org\nBcc: victim@example.org",
    "ada@example.org\rBcc: victim@example.org",
    "ada@example.org\r\n\r\nforged body",
    "\r\nBcc: victim@example.org\r\nada@example.org",
    "ada@example.org\x00",
    "ada@example.org\u2028Bcc: victim@example.org",
    "ada\u0085@example.org",
    # unicode that is not a real address: invisible, bidi-reordering, broken IDNA
    "ada@exam\u200bple.org",
    "ada\u202e@example.org",
    "ada@xn--zz.example",
    "ada@bücher..example",
    "ada\ufffd@example.org",  # what a form's invalid percent-encoding (%ff) decodes to
]


@pytest.mark.parametrize("address", BAD_ADDRESSES, ids=lambda a: repr(a[:40]))
def test_bad_addresses_get_a_clear_4xx_store_nothing_send_nothing(client, app_settings, address):
    before = snapshot(app_settings.database_url)
    form = client.post("/subscribe", data={"email": address, "interests": "x"})
    api = client.post("/subscribe", json={"email": address, "interests": "x"})
    assert form.status_code == 400 and "Please check your address" in form.text
    assert api.status_code == 400 and api.json()["error"] == "Please check your address"
    assert not any("victim" in value for value in form.headers.values())  # no response header
    assert snapshot(app_settings.database_url) == before and outbox(app_settings) == []


def test_line_breaks_in_fields_that_never_reach_a_header_cannot_inject_one(client, app_settings):
    """Interests are free text (a textarea) and only ever appear in bodies; the only input
    that reaches a header is the address, refused above. A confirmation carries exactly the
    headers we write, to exactly one recipient."""
    hostile = "robots\r\nBcc: victim@example.org\r\nSubject: free money\r\n\r\n<script>x</script>"
    r = client.post("/subscribe", data={"email": "ada@example.org", "interests": hostile})
    assert r.status_code == 202
    [msg] = outbox(app_settings)
    assert msg["Bcc"] is None and msg.get_all("To") == ["ada@example.org"]
    assert msg.get_all("Subject") == ["Please confirm your Paper Digest subscription"]
    names = {k.lower() for k in msg}
    assert names <= {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "auto-submitted",
        "content-type",
        "dkim-signature",
    }, names


def test_unicode_and_idn_addresses_one_subscriber_delivered_without_smtputf8(configure, pg_url):
    """Valid internationalised addresses are accepted and stored once, however they are
    spelled (NFC/NFD, upper case, Unicode or A-label domain). An IDN domain is delivered in its
    A-label form, so the relay needs no SMTPUTF8; a non-ASCII mailbox name on a relay without
    SMTPUTF8 is a permanent failure for that reader only: it never stalls the rest of the batch."""
    from newsletter import admin
    from newsletter.web import create_app

    box = FaultySMTP()
    server = SMTPServer(box, enable_SMTPUTF8=False).start()  # a relay without SMTPUTF8
    try:
        settings = configure(
            NEWSLETTER_DATABASE_URL=pg_url,
            NEWSLETTER_SMTP_HOST="127.0.0.1",
            NEWSLETTER_SMTP_PORT=str(server.port),
            NEWSLETTER_SIGNUP_RATE_PER_IP="1000",
        )
        with TestClient(create_app(settings)) as c:
            answers = {
                (r.status_code, r.text)
                for r in (
                    c.post("/subscribe", data={"email": a})
                    for a in (
                        "ada@BÜCHER.example",
                        "ada@xn--bcher-kva.example",
                        "ada@bücher.example",
                        "jose\u0301@example.org",
                        "jos\u00e9@example.org",
                    )
                )
            }
        assert len(answers) == 1 and answers.pop()[0] == 202
        engine = create_engine(pg_url)
        with engine.connect() as conn:
            emails = sorted(conn.execute(text("SELECT email FROM subscriber")).scalars())
        engine.dispose()
        assert emails == ["ada@bücher.example", "jos\u00e9@example.org"]  # two readers, NFC
        assert box.received["ada@xn--bcher-kva.example"] == 1  # one confirmation, A-label
        assert box.received["jos\u00e9@example.org"] == 0  # needs SMTPUTF8: refused, no retry

        # A digest batch with both kinds among ordinary readers.
        ingest_sample()
        for a in ("one@example.org", "eve@bücher.example", "\u7528\u6237@example.org", "two@example.org"):
            add_subscriber(a)
        result = admin.send_now(get_settings(), "weekly")
        assert result["counts"]["sent"] == 3 and result["counts"]["failed"] == 1
        assert result["counts"]["deferred"] == 0  # nothing stuck behind the unicode mailbox
        assert box.received["one@example.org"] == box.received["two@example.org"] == 1
        assert box.received["eve@xn--bcher-kva.example"] == 1
        assert box.received["\u7528\u6237@example.org"] == 0
    finally:
        server.stop()


def test_non_ascii_mailbox_names_are_delivered_over_smtputf8(configure, pg_url):
    from newsletter.web import create_app

    box = FaultySMTP()
    server = SMTPServer(box, enable_SMTPUTF8=True).start()
    try:
        settings = configure(
            NEWSLETTER_DATABASE_URL=pg_url,
            NEWSLETTER_SMTP_HOST="127.0.0.1",
            NEWSLETTER_SMTP_PORT=str(server.port),
        )
        with TestClient(create_app(settings)) as c:
            assert (
                c.post("/subscribe", data={"email": "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a"}).status_code
                == 202
            )
        assert box.received == {"\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a": 1}
    finally:
        server.stop()


# ---- hostile paper text ---------------------------------------------------------------------


def test_paper_text_with_html_is_escaped_in_every_page_and_email(configure, pg_url, smtp_server):
    """A source sends a paper whose title, abstract, authors and links carry markup and
    script. Every page that shows it and the digest's HTML show it as text; the plain-text part
    shows it verbatim (it is text); no javascript: link survives."""
    from newsletter import admin
    from newsletter.papers import PaperRecord, ingest_records
    from newsletter.testing import configured_session
    from newsletter.web import create_app

    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port)
    )
    ingest_sample()
    with configured_session() as session:
        ingest_records(
            session,
            [
                PaperRecord(
                    title="<script>alert('title')</script> Agents using tools <b>bold</b>",
                    abstract="<img src=x onerror=alert('abstract')> large language model agents",
                    authors=["<svg onload=alert('author')>", 'Eve "quote" O\'Brien'],
                    url='https://example.org/p"><script>alert("url")</script>',
                    code_url="javascript:alert('code')",
                    source="test",
                    upvotes=10_000,
                )
            ],
        )
    sub_id = add_subscriber("ada@example.org", interests="large language model agents tools")
    result = admin.send_now(get_settings(), "weekly")
    assert result["counts"]["sent"] == 1
    [msg] = box.parsed("ada@example.org")
    html_mail = msg.get_body(("html",)).get_content()
    pages = {"email html": html_mail}
    with TestClient(create_app(settings), base_url=BASE) as c:
        issue_id = result["issue_id"]
        view = re.search(r"https://news\.example\.org(/issues/\d+/view/[\w.-]+)", text_part(msg))
        vote = re.search(r'href="https://news\.example\.org(/vote/[\w.-]+/\d+/(?:more|less))"', html_mail)
        prefs = path_of(link_in(msg, "preferences"))
        for name, path in [
            ("archive", "/archive"),
            ("archive issue", f"/archive/{issue_id}"),
            ("view in browser", view.group(1)),
            ("vote page", vote.group(1)),
            ("preferences", prefs),
        ]:
            r = c.get(path)
            assert r.status_code == 200, (name, r.text[:300])
            pages[name] = r.text
        pages["vote done"] = c.post(vote.group(1)).text  # the paper title lands in "liked"
        pages["preferences after vote"] = c.get(prefs).text
    assert "&lt;script&gt;alert(" in pages["archive issue"]
    assert "&lt;script&gt;alert(" in pages["preferences after vote"]
    for name, html in pages.items():
        assert "<script>alert" not in html, name
        assert "<img src=x" not in html and "<svg onload" not in html, name
        assert "<b>bold</b>" not in html, name
        assert not re.search(r"""href=["']?\s*javascript:""", html, re.I), name
        assert '"><script>' not in html, name
    text = text_part(msg)
    assert "<script>alert('title')</script> Agents using tools" in text  # verbatim as text
    assert "javascript:" not in text
    assert sub_row(sub_id).status.value == "confirmed"


# ---- tokens ---------------------------------------------------------------------------------


@pytest.fixture
def reader_world(client, app_settings):
    """Two confirmed readers with a sent issue, and a pending one: real tokens of each kind."""
    from newsletter import admin
    from newsletter.models import Issue
    from newsletter.subscriptions import request_subscription
    from newsletter.testing import configured_session

    ingest_sample()
    a = add_subscriber("ada@example.org", interests="language model agents")
    b = add_subscriber("bob@example.org", interests="robot learning")
    admin.send_now(get_settings(), "weekly")
    with configured_session() as session:
        request_subscription(session, app_settings, "pen@example.org", "robots")
    with configured_session() as session:
        issue = session.exec(select(Issue)).first()[0]
    pen = subscriber_id("pen@example.org")
    return type(
        "World",
        (),
        {
            "a": a,
            "b": b,
            "pen": pen,
            "issue": issue,
            "paper": issue.paper_ids[0],
            "other_paper": issue.paper_ids[1],
        },
    )


def token_for(settings, purpose: Purpose, sub_id: int, **extra) -> str:
    sub = sub_row(sub_id)
    return make_token(settings, purpose, sub.token_key, sub.token_version, **extra)


def test_bad_tokens_are_refused_with_a_clear_page_and_change_nothing(
    client, app_settings, reader_world, monkeypatch
):
    """Forged, tampered, signed with another key, expired, used, of another purpose, of another
    subscriber or issue: on every token route, GET and POST, a 400/410 page that says what
    happened and what to do; no row changes, no email goes out."""
    import itsdangerous.timed

    w, s = reader_world, app_settings
    issue_id = w.issue.id
    view = lambda sid, i=issue_id: token_for(s, Purpose.view, sid, i=i)  # noqa: E731
    vote = lambda sid, p=w.paper: token_for(s, Purpose.vote, sid, i=issue_id, p=p, d=1)  # noqa: E731
    good = {
        Purpose.confirm: token_for(s, Purpose.confirm, w.pen),
        Purpose.unsubscribe: token_for(s, Purpose.unsubscribe, w.a),
        Purpose.preferences: token_for(s, Purpose.preferences, w.a),
        Purpose.view: view(w.a),
        Purpose.vote: vote(w.a),
    }
    routes = [
        ("GET", "/confirm/{t}", Purpose.confirm),
        ("POST", "/confirm/{t}", Purpose.confirm),
        ("GET", "/unsubscribe/{t}", Purpose.unsubscribe),
        ("POST", "/unsubscribe/{t}", Purpose.unsubscribe),
        ("GET", "/preferences/{t}", Purpose.preferences),
        ("POST", "/preferences/{t}", Purpose.preferences),
        ("GET", "/preferences/{t}/export", Purpose.preferences),
        ("POST", "/preferences/{t}/reset-profile", Purpose.preferences),
        ("POST", "/preferences/{t}/erase", Purpose.preferences),
        ("GET", f"/issues/{issue_id}/view/{{t}}", Purpose.view),
        ("GET", "/vote/{t}", Purpose.vote),
        ("POST", "/vote/{t}", Purpose.vote),
        ("GET", f"/vote/{{t}}/{w.paper}/more", Purpose.vote),
        ("POST", f"/vote/{{t}}/{w.paper}/less", Purpose.vote),
    ]
    other_key = s.model_copy(update={"secret_key": "another-secret-key-0123456789"})
    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(
        itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: real(self) - 400 * 86400
    )
    from newsletter.tokens import _serializer  # itsdangerous itself, with the clock set back

    expired = {
        p: _serializer(s, p).dumps(
            {
                "s": sub_row(w.pen if p is Purpose.confirm else w.a).token_key,
                "v": sub_row(w.a).token_version,
                "i": issue_id,
                "p": w.paper,
                "d": 1,
            }
        )
        for p in Purpose
    }
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", real)

    def bad_tokens(purpose: Purpose) -> dict[str, str]:
        token = good[purpose]
        payload, stamp, sig = token.split(".")
        other_payload = token_for(s, purpose, w.b, i=issue_id, p=w.paper, d=1).split(".")[0]
        wrong_purpose = next(p for p in Purpose if p is not purpose)
        return {
            "garbage": "not-a-token",
            "empty-ish": ".",
            "huge": "a" * 4000,
            "truncated": token[:-5],
            "signature changed": token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:],
            "payload of another subscriber": f"{other_payload}.{stamp}.{sig}",
            "signed with another key": make_token(other_key, purpose, sub_row(w.a).token_key, 0),
            "expired": expired[purpose],
            "another purpose": token_for(s, wrong_purpose, w.a, i=issue_id, p=w.paper, d=1),
        }

    before, mails = snapshot(s.database_url), len(outbox(s))
    seen = set()
    for method, path, purpose in routes:
        for kind, token in bad_tokens(purpose).items():
            r = client.request(method, path.format(t=token), data={"confirm": "yes"})
            assert r.status_code in (400, 404, 410), (method, path, kind, r.status_code)
            if r.status_code != 404:  # 404: a path the router refused (e.g. "." or a slash)
                assert any(t in r.text for t in (TOKEN_TITLES[400], *TOKEN_TITLES[410])), (
                    method,
                    path,
                    kind,
                    r.text[:200],
                )
                assert 'href="https://news.example.org/"' in r.text  # a way forward
            seen.add(kind)
    # another subscriber's issue link, a vote for a paper not in the issue, another issue
    for method, path in [
        ("GET", f"/issues/{issue_id + 1}/view/{view(w.a)}"),
        ("GET", f"/issues/{issue_id}/view/{view(w.a, i=issue_id + 1)}"),
        ("GET", f"/vote/{vote(w.a, p=10**6)}"),
        ("POST", f"/vote/{vote(w.a, p=10**6)}"),
    ]:
        r = client.request(method, path)
        assert r.status_code == 400 and TOKEN_TITLES[400] in r.text, (path, r.status_code)
    assert snapshot(s.database_url) == before and len(outbox(s)) == mails
    assert len(seen) == 9

    # replayed: a confirmation link works once; old links die when the subscription renews
    confirm = good[Purpose.confirm]
    assert client.post(f"/confirm/{confirm}").status_code == 200
    again = client.post(f"/confirm/{confirm}")
    assert again.status_code == 410 and "already been used" in again.text
    prefs = good[Purpose.preferences]
    vote_link = f"/vote/{token_for(s, Purpose.vote, w.a, i=issue_id)}/{w.paper}/more"
    client.post(f"/unsubscribe/{good[Purpose.unsubscribe]}")
    client.post("/subscribe", data={"email": "ada@example.org"})  # a fresh opt-in, once confirmed: new links
    assert client.get(f"/preferences/{prefs}").status_code == 200  # (anyone may have asked)
    renewal = [m for m in outbox(s) if m["To"] == "ada@example.org"][-1]
    assert client.post(path_of(link_in(renewal, "confirm"))).status_code == 200
    for path in (
        f"/preferences/{prefs}",
        f"/issues/{issue_id}/view/{good[Purpose.view]}",
        f"/vote/{good[Purpose.vote]}",
        vote_link,
    ):
        r = client.get(path)
        assert r.status_code == 410 and "already been used" in r.text, path


def test_signatures_and_the_webhook_secret_are_compared_in_constant_time(
    client, reader_world, app_settings, monkeypatch
):
    """Token signatures are HMAC-SHA1 checked by itsdangerous with hmac.compare_digest, and the
    webhook's bearer secret with hmac.compare_digest too: no early-exit string comparison that
    leaks how many leading characters were right."""
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    token = token_for(app_settings, Purpose.preferences, reader_world.a)
    assert client.get(f"/preferences/{token[:-2]}xx").status_code == 400
    assert len(calls) >= 1
    calls.clear()
    assert client.get(f"/preferences/{token}").status_code == 200 and len(calls) >= 1
    calls.clear()
    r = client.post(
        "/webhooks/bounce",
        json={"type": "complaint", "email": "ada@example.org"},
        headers={"Authorization": "Bearer hook-secret-0123456780"},
    )
    assert r.status_code == 401 and calls == [1]


# ---- enumeration ----------------------------------------------------------------------------


def test_no_endpoint_tells_whether_an_address_is_known(client, app_settings, reader_world):
    """Signing up (and signing up again, which is how a confirmation is resent) answers the same
    for an unknown, pending, confirmed, unsubscribed, bounced or erased address, in any case,
    form or JSON, inside or outside the cooldown. Preferences are reached only through a signed
    link: no route looks a subscriber up by address, except the authenticated webhook and the
    admin API (an admin token, see tests/test_admin_api.py)."""
    from newsletter.models import Subscriber, SubscriberStatus
    from newsletter.testing import configured_session

    with configured_session() as session:
        session.add(
            Subscriber(
                email="gone@example.org", email_key="gone@example.org", status=SubscriberStatus.unsubscribed
            )
        )
        session.add(
            Subscriber(
                email="bounced@example.org", email_key="bounced@example.org", status=SubscriberStatus.bounced
            )
        )
    erase_token = token_for(app_settings, Purpose.preferences, reader_world.b)
    assert (
        client.post(f"/preferences/{erase_token}/erase", data={"confirm": "yes"}).status_code == 200
    )  # bob@example.org is erased

    def answers(address):
        form = client.post("/subscribe", data={"email": address, "interests": "x"})
        api = client.post("/subscribe", json={"email": address, "interests": "x"})
        return (form.status_code, form.text, dict(form.cookies)), (api.status_code, api.json())

    cases = [
        "never-seen@example.org",
        "pen@example.org",
        "PEN@Example.org",
        "ada@example.org",
        "Ada@EXAMPLE.org",
        "gone@example.org",
        "bounced@example.org",
        "bob@example.org",
        "never-seen@example.org",
    ]  # the last one: again, inside the cooldown
    seen = {address: answers(address) for address in cases}
    assert len({json.dumps(v, sort_keys=True) for v in seen.values()}) == 1, seen
    assert next(iter(seen.values()))[0][0] == 202

    schema = client.get("/api/openapi.json").json()
    by_address = sorted(
        path for path, ops in schema["paths"].items() if "email" in json.dumps(ops) or "{email}" in path
    )
    assert [p for p in by_address if not p.startswith("/api/admin/")] == ["/subscribe", "/webhooks/bounce"]


# ---- no GET changes state -------------------------------------------------------------------


def every_get_url(s, w) -> dict[str, str]:
    """Each GET route of the app and a URL for it with real, valid tokens."""
    issue_id = w.issue.id
    return {
        "/": "/",
        "/subscribe": "/subscribe",  # a 303 to the signup page
        "/subscribe/challenge": "/subscribe/challenge",
        "/healthz": "/healthz",
        "/readyz": "/readyz",
        "/metrics": "/metrics",
        "/archive": "/archive",
        "/archive.xml": "/archive.xml",
        "/archive/{issue_id}": f"/archive/{issue_id}",
        "/confirm/{token}": f"/confirm/{token_for(s, Purpose.confirm, w.pen)}",
        "/unsubscribe/{token}": f"/unsubscribe/{token_for(s, Purpose.unsubscribe, w.a)}",
        "/preferences/{token}": f"/preferences/{token_for(s, Purpose.preferences, w.a)}",
        "/preferences/{token}/export": f"/preferences/{token_for(s, Purpose.preferences, w.a)}/export",
        "/issues/{issue_id}/view/{token}": (
            f"/issues/{issue_id}/view/{token_for(s, Purpose.view, w.a, i=issue_id)}"
        ),
        "/vote/{token}": f"/vote/{token_for(s, Purpose.vote, w.a, i=issue_id, p=w.paper, d=1)}",
        "/vote/{token}/{paper_id}/{direction}": (
            f"/vote/{token_for(s, Purpose.vote, w.a, i=issue_id)}/{w.paper}/less"
        ),
        "/api/openapi.json": "/api/openapi.json",
        "/api/docs": "/api/docs",
        "/docs/oauth2-redirect": "/docs/oauth2-redirect",
        # The admin pages, walked logged in (`admin_login`).
        "/admin": "/admin",
        "/admin/login": "/admin/login",
        "/admin/subscribers": "/admin/subscribers?q=ada",
        "/admin/subscribers/{subscriber_id}": f"/admin/subscribers/{w.a}",
        "/admin/subscribers/{subscriber_id}/erase": f"/admin/subscribers/{w.a}/erase",
        "/admin/issues": "/admin/issues",
        "/admin/issues/{issue_id}": f"/admin/issues/{issue_id}",
        "/admin/preview": "/admin/preview?interests=robots&email=ada@example.org",
        "/admin/preview/digest": "/admin/preview/digest?interests=robots",
        "/admin/import": "/admin/import",
        **{
            f"/api/admin{path}": f"/api/admin{path}".format(subscriber_id=w.a, issue_id=issue_id)
            for path in (
                "/subscribers",
                "/subscribers/{subscriber_id}",
                "/subscribers/{subscriber_id}/export",
                "/issues",
                "/issues/due",
                "/issues/{issue_id}",
                "/issues/{issue_id}/top-voted",
                "/deliveries",
                "/stats",
                "/openapi.json",
            )
        },
    }


def admin_login(client) -> None:
    """Open an admin session on `client` (a POST that sets a cookie and changes no row)."""
    import re

    form = client.get("/admin/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    answer = client.post("/admin/login", data={"secret": ADMIN, "csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and "newsletter_admin" in client.cookies


def credentials_for(path: str) -> dict[str, str] | None:
    """The bearer token a GET of `path` needs: the metrics token, an admin token, or none."""
    if path == "/metrics":
        return {"Authorization": f"Bearer {METRICS}"}
    return {"Authorization": f"Bearer {HOOK}"} if path.startswith("/api/admin") else None


def test_no_get_or_head_changes_anything(client, app_settings, reader_world):
    """Every GET route of the app, with real, valid tokens (what a link scanner or a prefetch
    does): the database is identical afterwards and no email was sent. HEAD answers as GET
    does (RFC 9110 §9.3.2), without the body."""
    s = app_settings
    admin_login(client)
    urls = every_get_url(s, reader_world)
    get_routes = {r.path for r in app_routes(client.app) if "GET" in getattr(r, "methods", ())}
    assert get_routes == set(urls), get_routes ^ set(urls)  # a new GET route must be walked
    before, mails = snapshot(s.database_url), len(outbox(s))
    for path, url in urls.items():
        for method in ("GET", "HEAD", "GET"):
            r = client.request(method, url, headers=credentials_for(path), follow_redirects=False)
            assert r.status_code == (303 if path == "/subscribe" else 200), (method, path, r.text[:200])
            if method == "HEAD":
                assert r.content == b"", path
    assert snapshot(s.database_url) == before
    assert len(outbox(s)) == mails


# ---- headers and Content-Security-Policy ----------------------------------------------------


def test_every_answer_carries_the_security_headers_and_every_page_a_policy(
    client, app_settings, reader_world, configure
):
    """Every GET route, the error pages, both kinds of 413 and a 500 (which used to bypass the
    header middleware) carry nosniff, same-origin referrers, DENY framing, no-store, HSTS (the
    base URL is https) and a Content-Security-Policy that loads and runs nothing but the page's
    own stylesheet and script. The view-in-browser page takes images from the
    thumbnail hosts only, so a paper's image link to any other server loads nothing."""
    from newsletter.web import create_app
    from newsletter.web.headers import inline_hash

    admin_login(client)
    answers = {
        path: client.get(url, headers=credentials_for(path))
        for path, url in every_get_url(app_settings, reader_world).items()
    }
    answers["404 page"] = client.get("/no-such-page")
    answers["400 bad link"] = client.get("/preferences/not-a-token")
    answers["401 metrics"] = client.get("/metrics")
    answers["403 cross-site form"] = client.post(
        "/subscribe", data={"email": "a@example.org"}, headers={"Origin": "https://evil.example"}
    )
    answers["413 by length"] = client.post(
        "/subscribe", data={"email": "a@example.org", "interests": "x" * 70_000}
    )
    answers["413 chunked"] = client.post(
        "/subscribe", content=iter([b"x" * 40_000] * 3), headers={"content-type": "application/json"}
    )

    def boom() -> None:
        raise RuntimeError("a bug")

    app = create_app(app_settings)
    app.add_api_route("/boom", boom)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        answers["500"] = c.get("/boom")
    assert answers["500"].status_code == 500
    assert answers["413 chunked"].status_code == answers["413 by length"].status_code == 413

    page_styles = f"style-src {inline_hash(app_settings, 'page.css')}"
    admin_styles = (
        f"style-src {inline_hash(app_settings, 'page.css')} {inline_hash(app_settings, 'admin/admin.css')}"
    )
    for name, r in answers.items():
        h = r.headers
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "same-origin", name
        assert h["cache-control"] == "no-store", name
        if name == "/admin/preview/digest":  # the digest in the preview's frame: this site only
            assert h["x-frame-options"] == "SAMEORIGIN", name
            policy = [d.strip() for d in h["content-security-policy"].split(";")]
            assert {"default-src 'none'", "frame-ancestors 'self'", "sandbox", "form-action 'none'"} <= set(
                policy
            )
            continue
        assert h["x-frame-options"] == "DENY", name
        assert h["strict-transport-security"].startswith("max-age="), name
        if name in ("/api/docs", "/docs/oauth2-redirect"):  # development only: Swagger UI's CDN
            continue
        policy = [d.strip() for d in h["content-security-policy"].split(";")]
        assert {"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} <= set(policy), name
        assert "unsafe-eval" not in h["content-security-policy"], name
        if name == "/issues/{issue_id}/view/{token}":
            assert "img-src https://cdn-thumbnails.huggingface.co" in policy
            assert "style-src 'unsafe-inline'" in policy and "form-action 'none'" in policy
        elif name.startswith("/admin"):  # no script at all; frames from this site (the preview)
            assert admin_styles in policy and "frame-src 'self'" in policy, name
            assert "script" not in h["content-security-policy"], name
            assert "form-action 'self' https://news.example.org" in policy, name
        elif h["content-type"].startswith("text/html"):
            assert page_styles in policy, name
            assert "form-action 'self' https://news.example.org" in policy, name
            assert "unsafe-inline" not in h["content-security-policy"], name

    plain = configure(
        NEWSLETTER_DATABASE_URL=app_settings.database_url, NEWSLETTER_BASE_URL="http://127.0.0.1:8000"
    )
    with TestClient(create_app(plain)) as c:
        assert "strict-transport-security" not in c.get("/").headers


# ---- production settings --------------------------------------------------------------------


def test_production_refuses_a_default_or_short_secret(tmp_path, configure, monkeypatch):
    """Settings, create_app, `newsletter serve` and a bare uvicorn all refuse to run in
    production mode with the default (or a short, or no) secret; none of them binds the port.
    (Weak secrets: tests/test_tokens.py::test_production_refuses_a_weak_secret.)"""
    from newsletter.config import DEV_SECRET, ConfigError, Settings
    from newsletter.web import create_app

    for secret in (DEV_SECRET, "short", None):
        kwargs = {"secret_key": secret} if secret else {}
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            Settings(mode="production", base_url=BASE, **kwargs)
    strong = "Xq0dJm3-kR9wZ2v_Lp8sT4yB7nC1fH6gA5eU0iO3rE9tY2uWx7-Jn4"  # 54 characters
    assert (
        Settings(mode="production", base_url=BASE, secret_key=strong, **PRODUCTION_IDENTITY).mode
        == "production"
    )

    from newsletter.config import reset_settings

    configure(NEWSLETTER_MODE="production", NEWSLETTER_SECRET_KEY=strong, **PRODUCTION_ENV)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    reset_settings()
    with pytest.raises(ConfigError):
        create_app()

    env = process_env(NEWSLETTER_MODE="production")
    env.pop("NEWSLETTER_SECRET_KEY")

    bin_dir = Path(sys.executable).parent
    for name, argv in [
        ("cli", [str(bin_dir / "newsletter"), "serve"]),
        (
            "uvicorn",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "newsletter.web:create_app",
                "--host",
                "127.0.0.1",
            ],
        ),
    ]:
        for secret in (None, DEV_SECRET, "too-short"):
            port = free_port()
            run_env = dict(env, NEWSLETTER_SECRET_KEY=secret) if secret else env
            done = subprocess.run(
                [*argv, "--port", str(port)], cwd=tmp_path, env=run_env, capture_output=True, timeout=60
            )
            assert done.returncode != 0, (name, secret)
            assert b"NEWSLETTER_SECRET_KEY" in done.stderr + done.stdout, (name, done.stderr)
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0  # never listened


# ---- STARTTLS verifies certificates ---------------------------------------------------------


def self_signed(tmp_path: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for `names` (DNS names or IP addresses)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    stem = tmp_path / names[0].replace(".", "_")
    cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls_verifies_the_server_certificate(configure, tmp_path, monkeypatch, tls):
    """A relay that offers STARTTLS (port 587's way), or TLS from the first byte (port 465's,
    NEWSLETTER_SMTP_TLS), with a self-signed certificate: sending fails with a certificate
    error and the relay receives nothing. Trusting that certificate (SSL_CERT_FILE) makes the
    same send work, so the failure was the verification; a trusted certificate for another host
    name still fails (the host name is checked too)."""
    import ssl

    from newsletter.mail.senders import SMTPSender, TransientSendError

    def relay(cert: Path, key: Path) -> SMTPServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if tls == "implicit":
            return SMTPServer(FaultySMTP(), ssl_context=context).start()
        return SMTPServer(FaultySMTP(), tls_context=context, require_starttls=True).start()

    def send(server: SMTPServer) -> None:
        settings = configure(
            NEWSLETTER_SMTP_HOST="127.0.0.1",
            NEWSLETTER_SMTP_PORT=str(server.port),
            **{"NEWSLETTER_SMTP_TLS" if tls == "implicit" else "NEWSLETTER_SMTP_STARTTLS": "true"},
        )
        sender = SMTPSender(settings)
        try:
            sender.send("ada@example.org", b"Subject: hi\r\n\r\nhello\r\n")
        finally:
            sender.close()

    cert, key = self_signed(tmp_path, ["127.0.0.1", "localhost"])
    server = relay(cert, key)
    try:
        with pytest.raises(TransientSendError, match="CERTIFICATE_VERIFY_FAILED"):
            send(server)
        assert server.handler.total() == 0
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the client trusts it
        send(server)
        assert server.handler.received == {"ada@example.org": 1}
    finally:
        server.stop()

    other_cert, other_key = self_signed(tmp_path, ["mail.example.org"])
    monkeypatch.setenv("SSL_CERT_FILE", str(other_cert))
    server = relay(other_cert, other_key)
    try:
        with pytest.raises(TransientSendError, match="certificate|match"):
            send(server)
        assert server.handler.total() == 0
    finally:
        server.stop()


# ---- DKIM on the digest ---------------------------------------------------------------------


def test_digest_dkim_signature_verifies_and_covers_the_one_click_headers(
    configure, pg_url, smtp_server, tmp_path
):
    """tests/test_mail.py checks a journey email; this checks the digest as it leaves a real
    send: the signature verifies with dkimpy and h= covers From, List-Unsubscribe and
    List-Unsubscribe-Post (RFC 8058 §4); changing a covered header breaks it."""
    import dkim

    from newsletter import admin
    from newsletter.testing import dkim_test_key

    record = dkim_test_key(tmp_path / "dkim.pem")
    box, port = smtp_server
    configure(
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_DKIM_SELECTOR="pd",
        NEWSLETTER_DKIM_DOMAIN="news.example.org",
        NEWSLETTER_DKIM_PRIVATE_KEY_PATH=str(tmp_path / "dkim.pem"),
    )
    ingest_sample()
    add_subscriber("ada@example.org")
    assert admin.send_now(get_settings(), "weekly")["counts"]["sent"] == 1
    [(_, rcpts, raw)] = box.messages
    dns = lambda name, timeout=5: record if name == b"pd._domainkey.news.example.org." else None  # noqa: E731
    assert raw.startswith(b"DKIM-Signature:") and dkim.verify(raw, dnsfunc=dns)
    from dkim.util import parse_tag_value

    header = email.message_from_bytes(raw)["DKIM-Signature"]
    tags = parse_tag_value(re.sub(r"\s+", "", header).encode())
    signed = set(tags[b"h"].lower().split(b":"))
    assert {b"from", b"list-unsubscribe", b"list-unsubscribe-post", b"subject"} <= signed
    tampered = re.sub(rb"List-Unsubscribe-Post: [^\r]+", b"List-Unsubscribe-Post: nope", raw)
    assert tampered != raw and not dkim.verify(tampered, dnsfunc=dns)


# ---- rate limits under a burst, over the network --------------------------------------------


async def burst(url: str, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    """All at once: one connection per request, no client-side pacing."""
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(timeout=30, limits=limits) as c:
        return await asyncio.gather(
            *(c.post(url + "/subscribe", data={"email": a}, headers=h) for a, h in requests)
        )


@pytest.fixture
def web_stack(pg_url, tmp_path):
    """uvicorn (real process) on PostgreSQL with a private Redis as broker and rate-limit store;
    no worker, so queued confirmations stay in the broker where the test can count them."""
    redis = PrivateRedis(tmp_path).start()
    env = process_env(
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_BROKER_URL=redis.url,
        NEWSLETTER_SIGNUP_RATE_PER_IP="10",
        NEWSLETTER_CONFIRM_COOLDOWN_MINUTES="10",
    )
    web = WebServer(env, tmp_path / "web.log")
    yield type("WebStack", (), {"url": web.url, "redis": redis.url, "db_url": pg_url})
    web.stop()
    redis.kill()


def test_per_ip_and_per_address_limits_hold_under_a_burst(web_stack):
    """60 simultaneous signups from one client IP with a limit of 10 a minute: exactly 10 are
    accepted (stored once, one confirmation each), 50 get 429. Then 30 simultaneous signups of
    one new address from 30 IPs, in different spellings: all get the same 202, and there is one
    subscriber, one confirmation and one consent row. uvicorn trusts X-Forwarded-For from 127.0.0.1 only (its
    default), which is how a test on loopback speaks for many clients."""
    one_ip = {"X-Forwarded-For": "203.0.113.9"}
    responses = asyncio.run(burst(web_stack.url, [(f"u{i}@example.org", one_ip) for i in range(60)]))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 10 + [429] * 50, codes
    accepted = {
        a
        for (a, _), r in zip([(f"u{i}@example.org", 0) for i in range(60)], responses, strict=False)
        if r.status_code == 202
    }
    engine = create_engine(web_stack.db_url)
    with engine.connect() as conn:
        stored = list(conn.execute(text("SELECT email_key, id FROM subscriber")))
        ips = set(conn.execute(text("SELECT DISTINCT ip FROM consent_event")).scalars())
    assert sorted(k for k, _ in stored) == sorted(accepted)
    assert ips == {"203.0.113.9"}
    queued = queued_journey_emails(web_stack.redis, web_stack.db_url)
    assert sorted(queued.elements()) == sorted(("confirm", i) for _, i in stored)
    assert "Too many signups" in next(r.text for r in responses if r.status_code == 429)

    spellings = ["same@example.org", "Same@example.org", "SAME@EXAMPLE.ORG", " same@example.org "]
    requests = [(spellings[i % 4], {"X-Forwarded-For": f"198.51.100.{i + 1}"}) for i in range(30)]
    responses = asyncio.run(burst(web_stack.url, requests))
    assert {(r.status_code, r.text) for r in responses} == {(responses[0].status_code, responses[0].text)}
    assert responses[0].status_code == 202
    with engine.connect() as conn:
        same = list(
            conn.execute(text("SELECT id FROM subscriber WHERE email_key = 'same@example.org'")).scalars()
        )
        events = conn.execute(
            text("SELECT count(*) FROM consent_event WHERE email_key = 'same@example.org'")
        ).scalar()
    engine.dispose()
    assert len(same) == 1 and events == 1  # the 29 that sent nothing left no consent row
    assert [
        q for q in queued_journey_emails(web_stack.redis, web_stack.db_url).elements() if q[1] == same[0]
    ] == [("confirm", same[0])]
