"""The send path's shortcuts give the same results as the plain ways they replace.

Fast token signing, line-cached quoted-printable, the OpenSSL DKIM signer, remembered rankings,
and the overlapped "sent" UPDATE (see benchmarks/RESULTS.md for what each one buys).
"""

from __future__ import annotations

import binascii
import email
import email.policy
import random
import time
from unittest import mock

import pytest
from sqlmodel import select

from newsletter.config import Settings
from newsletter.mail import message as mime
from newsletter.mail import qp
from newsletter.testing import dkim_test_key
from newsletter.tokens import Purpose, _serializer, make_token, read_token
from tests.conftest import insert_confirmed_readers

SECRET = "test-secret-0123456789abcdef"


# ---- tokens ---------------------------------------------------------------------------------


def random_payload(rng: random.Random) -> tuple[str, int, dict[str, int]]:
    """A token_key (random, or repetitive enough for zlib to win), a version and link fields,
    up to 19-digit ids (where itsdangerous's compression used to show up)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    if rng.random() < 0.8:
        key = "".join(rng.choice(alphabet) for _ in range(22))
    else:
        key = rng.choice(alphabet) * rng.randint(0, 40)
    number = lambda: rng.choice([rng.randint(0, 99), 2**31 - 1, rng.randint(0, 2**63)])  # noqa: E731
    extra = {name: number() for name in rng.sample("ipd", rng.randint(0, 3))}
    return key, number(), extra


@pytest.mark.parametrize("purpose", list(Purpose))
def test_fast_tokens_are_what_itsdangerous_writes_but_never_compressed(purpose):
    """The fast signer writes itsdangerous's format byte for byte, except that it never
    zlib-compresses the payload (itsdangerous does when that saves 2+ bytes): such a token has
    different bytes and verifies the same. Random payloads, both cases seen."""
    settings = Settings(mode="test", secret_key=SECRET)
    serializer = _serializer(settings, purpose)
    rng = random.Random(purpose.value)
    now = time.time() - 5
    seen = set()
    for _ in range(1500):
        key, version, extra = random_payload(rng)
        data = {"s": key, "v": version, **extra}
        with mock.patch("time.time", return_value=now):
            fast = make_token(settings, purpose, key, version, **extra)
            plain = serializer.dumps(data)
        compressed = plain.startswith(".")
        seen.add(compressed)
        if compressed:
            assert fast != plain and serializer.loads(plain) == data
            assert fast.split(".")[1] == plain.split(".")[2]  # same timestamp
        else:
            assert fast == plain
        assert serializer.loads(fast) == data
        read = read_token(settings, purpose, fast)
        assert (read.subscriber_key, read.version, read.extra) == (key, version, extra)
    assert seen == {True, False}


def test_tokens_with_other_payloads_still_go_through_itsdangerous():
    settings = Settings(mode="test", secret_key=SECRET)
    token = make_token(settings, Purpose.view, "key", 0, note="é" * 10, flag=True, quote='a"b')
    assert read_token(settings, Purpose.view, token).extra == {"note": "é" * 10, "flag": True, "quote": 'a"b'}


# ---- quoted-printable -----------------------------------------------------------------------


def random_text(rng: random.Random, alphabet: str, longest: int = 300) -> str:
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))
    if rng.random() < 0.2:
        text += " " * rng.randint(1, 3)
    if rng.random() < 0.1:
        text = "x" * rng.randint(70, 200) + "\n" + text
    return text


ALPHABETS = ("ab =\t.é数x\n\n" + "y" * 10, "a \t\n=", "x" * 30 + " \n\t=é", "xy.:/", "é==")


def assert_valid_quoted_printable(encoded: bytes, text: str) -> None:
    """Decodes to `text` (CRLF for each line break); each line printable US-ASCII, none ending
    in white space, none over 76 characters but where binascii itself writes one (a line ending
    in an encoded space: its "=20" is not counted)."""
    assert binascii.a2b_qp(encoded.replace(b"\r\n", b"\n")).decode() == text.replace("\r\n", "\n")
    for line in encoded.split(b"\r\n"):
        quirk = line.rstrip(b"=").endswith((b"=20", b"=09"))
        assert len(line) <= (78 if quirk else 76), line
        assert not line.endswith((b" ", b"\t")) and all(32 <= c < 127 or c == 9 for c in line), line


def test_assembled_quoted_printable_decodes_to_the_pieces_text():
    """The assembler's pieces are encoded each from the first column (literals once, values
    per reader), with soft line breaks between: other bytes than encoding the whole text, the
    same text once decoded, and as valid."""
    rng = random.Random(5)
    for alphabet in ALPHABETS:
        for _ in range(3000):
            pieces = [
                qp.Literal(text) if rng.random() < 0.5 else text
                for text in (random_text(rng, alphabet, 160) for _ in range(rng.randint(0, 12)))
            ]
            assert_valid_quoted_printable(qp.qp_pieces(pieces), qp.pieces_text(pieces))


def sample_renderer(configure, sqlite_url):
    """The settings and the renderer of an issue of the sample feed."""
    from newsletter import admin
    from newsletter.digests import DigestRenderer
    from newsletter.ledger import plan_issue
    from newsletter.models import Frequency, Issue, Paper
    from newsletter.papers import sample_feed_path
    from newsletter.testing import configured_session

    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    admin.ingest(settings, path=sample_feed_path())
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        issue = session.get(Issue, issue.id)
        papers = session.exec(select(Paper)).all()
    return settings, DigestRenderer(settings, issue, list(papers))


def test_a_digest_decodes_to_what_the_reader_is_shown(configure, sqlite_url):
    """The message's two parts, assembled and encoded piece by piece, decode to the text and
    HTML the renderer gives for the same reader (the view-in-browser page shows that HTML)."""
    from newsletter.models import Subscriber
    from newsletter.sending import digest_message

    settings, renderer = sample_renderer(configure, sqlite_url)
    for n, interests in enumerate(["", "robot learning", "diffusion, LLM agents", "x" * 90]):
        sub = Subscriber(
            id=n + 1, email=f"r{n}@example.org", email_key=f"r{n}", interests=interests, token_key=f"k{n}"
        )
        with mock.patch("time.time", return_value=time.time()):  # the links' tokens: one second
            built = digest_message(settings, renderer, sub, set())
            rendered = renderer.render(sub, renderer.items(sub, renderer.rank(sub)))
        assert built is not None
        message = email.message_from_bytes(built[0], policy=email.policy.default)
        text, html = (part.get_content().replace("\r\n", "\n") for part in message.iter_parts())
        assert (text, html) == (rendered.text, rendered.html)
        body = built[0].split(b"\r\n\r\n", 1)[1]
        for part in body.split(b"--=_pd_")[1:-1]:
            raw = part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
            assert_valid_quoted_printable(raw, binascii.a2b_qp(raw.replace(b"\r\n", b"\n")).decode())


# ---- DKIM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dkim")
    record = dkim_test_key(folder / "k.pem", pkcs8=True)
    return folder / "k.pem", (
        lambda name, timeout=5: record if name == b"s1._domainkey.news.example.org." else None
    )


def signed_digest_like(key_path, **headers) -> bytes:
    env = mime.Envelope(
        mail_from="Paper Digest <digest@news.example.org>",
        to="ada@example.org",
        subject="Paper Digest, week 48 of 2026: Résumé — " + "数学 " * 30,
        message_id=mime.new_message_id("news.example.org", "3.7"),
        headers={
            "List-Id": "Paper Digest <digest.news.example.org>",
            "List-Unsubscribe": "<https://news.example.org/unsubscribe/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            **headers,
        },
    )
    raw = mime.build_message(env, "Hello\n\n" + "word " * 400 + "\n\n\n", "<p>hi</p>\n" * 2000)
    return mime.dkim_sign(raw, selector="s1", domain="news.example.org", key_path=key_path)


def test_fast_dkim_signature_verifies_with_dkimpy_and_covers_one_click(dkim_key):
    dkim = pytest.importorskip("dkim")
    key_path, dns = dkim_key
    raw = signed_digest_like(key_path)
    assert raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple;")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert dkim.verify(raw, dnsfunc=dns)
    tag = raw.split(b"h=", 1)[1].split(b";", 1)[0].replace(b"\r\n", b"").replace(b"\t", b"")
    assert {b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"} <= set(tag.split(b":"))
    for before, after in [
        (b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Nothing"),
        (b"ada@example.org", b"eve@example.org"),
        (b"word word", b"word sword"),
    ]:
        assert not dkim.verify(raw.replace(before, after, 1), dnsfunc=dns), before
    # relaxed/simple: refolded header whitespace is fine, an added trailing empty line too
    assert dkim.verify(raw.replace(b"List-Id: ", b"List-Id:  \t ") + b"\r\n", dnsfunc=dns)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_fast_dkim_agrees_with_dkimpy_on_what_it_signs(dkim_key):
    dkim = pytest.importorskip("dkim")
    key_path, dns = dkim_key
    env = mime.Envelope(
        mail_from="a@news.example.org",
        to="b@example.org",
        subject="x",
        message_id="<1@news.example.org>",
        date="Thu, 26 Nov 2026 07:00:00 +0000",
    )
    raw = mime.build_message(env, "t", "h")
    ours = mime.dkim_sign(raw, selector="s1", domain="news.example.org", key_path=key_path)
    theirs = mime._dkimpy_sign(raw, "s1", "news.example.org", key_path, [b"from", b"to", b"subject", b"date"])
    assert dkim.verify(ours, dnsfunc=dns) and dkim.verify(theirs, dnsfunc=dns)

    def bh(signed: bytes) -> bytes:
        return signed.split(b"bh=", 1)[1].split(b";", 1)[0]

    assert bh(ours) == bh(theirs)  # the same body hash: the same body canonicalisation


# ---- rankings remembered per issue ----------------------------------------------------------


def test_remembered_rankings_equal_fresh_ones(configure, sqlite_url):
    from newsletter.models import Subscriber
    from newsletter.ranking import rank_papers

    _, renderer = sample_renderer(configure, sqlite_url)
    some = sorted(renderer.views)[:3]
    readers = [
        ("", {}, set(), 10),
        ("robot learning", {}, set(), 10),
        ("robot learning", {}, {some[0]}, 10),
        ("robot learning", {}, set(), 5),
        ("robot learning", {"terms": {"diffusion": 2.0}, "votes": 2}, set(), 10),
        ("medical imaging", {}, set(), 10),
    ]
    for round_ in range(2):  # the second round is served from memory
        for n, (interests, profile, exclude, limit) in enumerate(readers):
            sub = Subscriber(
                id=n + 1,
                email=f"r{n}@example.org",
                email_key=f"r{n}",
                interests=interests,
                profile=profile,
                max_papers=limit,
            )
            fresh = rank_papers(
                renderer.index, interests, profile=profile or None, exclude=exclude, limit=limit
            )
            assert renderer.rank(sub, exclude) == fresh, (round_, interests, exclude, limit)


# ---- the overlapped "sent" UPDATE -----------------------------------------------------------


def _batch_world(configure, pg_url, smtp_server, readers: int):
    from newsletter import admin
    from newsletter.ledger import plan_issue
    from newsletter.models import Delivery, Frequency, Subscriber, SubscriberStatus
    from newsletter.papers import sample_feed_path
    from newsletter.testing import configured_session

    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port)
    )
    admin.ingest(settings, path=sample_feed_path())
    with configured_session() as session:
        for i in range(readers):
            session.add(
                Subscriber(
                    email=f"r{i}@example.org",
                    email_key=f"r{i}@example.org",
                    interests="robot learning" if i % 2 else "",
                    status=SubscriberStatus.confirmed,
                )
            )
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        ids = list(session.exec(select(Delivery.id).where(Delivery.issue_id == issue.id)))
    return settings, box, issue.id, ids


@pytest.mark.parametrize("commit", ["on", "off"])
def test_sent_rows_recorded_in_flight_carry_everything(configure, pg_url, smtp_server, monkeypatch, commit):
    """Every row is recorded with what was sent. With `synchronous_commit = off` (here in the
    database URL, as an operator may set it) each next digest is built while the relay answers
    the `.` before it: the same messages and records, built at another moment."""
    from newsletter import sending
    from newsletter.db import get_engine
    from newsletter.delivery import send_batch
    from newsletter.models import Delivery, DeliveryState
    from newsletter.testing import configured_session

    url = pg_url if commit == "on" else f"{pg_url}?options=-csynchronous_commit%3Doff"
    settings, box, issue_id, ids = _batch_world(configure, url, smtp_server, 6)
    with get_engine(url).connect() as conn:
        assert sending.commits_wait_for_disk(conn) is (commit == "on")
    early = []
    real = sending._build_early
    monkeypatch.setattr(sending, "_build_early", lambda batch, row: early.append(row) or real(batch, row))
    assert send_batch(settings, issue_id, ids)["sent"] == 6
    assert len(early) == (5 if commit == "off" else 0)  # every row but the first was built early
    with configured_session() as session:
        rows = session.exec(select(Delivery)).all()
    assert {r.state for r in rows} == {DeliveryState.sent}
    sent_ids = {m["Message-ID"] for m in box.parsed()}
    for row in rows:
        assert row.smtp_code == 250 and row.sent_at is not None and row.error is None
        assert row.message_id in sent_ids and len(row.paper_ids) == 10


def test_a_failed_in_flight_update_is_recorded_the_plain_way(configure, pg_url, smtp_server, monkeypatch):
    from newsletter import ledger
    from newsletter.db import get_engine
    from newsletter.delivery import send_batch

    settings, box, issue_id, ids = _batch_world(configure, pg_url, smtp_server, 4)
    calls = {"n": 0}
    real = ledger.SentRecorder._collect

    def flaky(pgconn):
        calls["n"] += 1
        if calls["n"] == 2:  # the database connection breaks while the UPDATE is in flight
            pgconn.finish()
            raise OSError("connection lost")
        return real(pgconn)

    monkeypatch.setattr(ledger.SentRecorder, "_collect", staticmethod(flaky))
    assert send_batch(settings, issue_id, ids)["sent"] == 4
    assert calls["n"] >= 2  # the broken one was recorded again through record_sent
    assert ledger.delivery_counts(get_engine(settings.database_url), issue_id)["sent"] == 4
    assert len(box.messages) == 4


# ---- the ledger's queries stay O(batch) after a large plan ----------------------------------


def test_after_a_large_plan_claims_and_the_dispatch_look_rows_up_by_id(configure, pg_url):
    """Planning 3,000 readers refreshes PostgreSQL's statistics of the ledger, so a claim of 100
    rows and the dispatch's next page find their rows by primary key. With the statistics from
    before the plan (autovacuum runs a minute or more later, or is off) PostgreSQL read every
    pending row of the issue through ix_delivery_issue_state for each claim: a 200,000-reader
    send spent 40-140 ms per claim and most of the two cores in PostgreSQL."""
    from sqlalchemy import create_engine

    from newsletter import admin
    from newsletter.ledger import claim_statement, claimable_after, plan_issue
    from newsletter.ledger.tables import DELIVERIES
    from newsletter.papers import sample_feed_path
    from newsletter.testing import configured_session

    settings = configure(NEWSLETTER_DATABASE_URL=pg_url)
    admin.ingest(settings, path=sample_feed_path())
    insert_confirmed_readers(pg_url, 3000)
    engine = create_engine(pg_url)
    with configured_session() as session:
        issue, planned = plan_issue(session)
    assert planned == 3000
    with engine.connect() as conn:
        ids = list(conn.execute(select(DELIVERIES.c.id).order_by(DELIVERIES.c.id).limit(100)).scalars())
        for stmt in (claim_statement(issue.id, ids, "probe"), claimable_after(issue.id, ids[-1], 100)):
            sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + sql).scalars())
            assert "delivery_pkey" in plan and "ix_delivery_issue_state" not in plan, plan
    engine.dispose()
