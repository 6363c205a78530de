"""Links stay bound to the person they were mailed to: erased rows, reused ids, rotated keys.

The attacks of docs/security-review H1, L1, L12 and L13, replayed over HTTP against the real app
on SQLite (the embedded default, where ids used to be reused) and on the token functions.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter.models import Subscriber, SubscriberStatus
from newsletter.testing import configured_session
from newsletter.web import create_app
from tests.conftest import PRODUCTION_IDENTITY, link_in

BASE = "https://news.example.org"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def settings(configure, sqlite_url):
    return configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SIGNUP_RATE_PER_IP="50")


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def mail_to(settings, address: str):
    import email
    import email.policy

    messages = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(settings.outbox_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]
    return [m for m in messages if m["To"] == address]


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def row(address: str) -> Subscriber | None:
    with configured_session() as session:
        return session.exec(select(Subscriber).where(Subscriber.email_key == address)).first()


# ---- H1: a stale link never acts on the next person -----------------------------------------


def erased_mallory(client, settings) -> tuple[dict[str, str], int]:
    """Mallory signs up, keeps her confirmation link, confirms and erases herself: her links
    (confirm, preferences, unsubscribe) and the id she had."""
    client.post("/subscribe", data={"email": "mallory@example.org", "interests": "x"})
    confirm = path_of(link_in(mail_to(settings, "mallory@example.org")[-1], "confirm"))
    assert client.post(confirm).status_code == 200
    welcome = mail_to(settings, "mallory@example.org")[-1]
    links = {
        "confirm": confirm,
        "preferences": path_of(link_in(welcome, "preferences")),
        "unsubscribe": path_of(welcome["List-Unsubscribe"].split(",")[0].strip(" <>")),
    }
    mallory_id = row("mallory@example.org").id
    assert client.post(links["preferences"] + "/erase", data={"confirm": "yes"}).status_code == 200
    return links, mallory_id


def assert_dead_for(client, links: dict[str, str], address: str) -> None:
    """Every old link is refused (400/410), shows nothing of `address` and changes nothing. (A
    one-click unsubscribe, or an erase, of an erased subscriber answers 200 "Unsubscribed." or
    "erased": nothing is left.)"""
    before = row(address).model_dump()
    for method, path in [
        ("GET", links["confirm"]),
        ("POST", links["confirm"]),
        ("GET", links["preferences"]),
        ("GET", links["preferences"] + "/export"),
        ("POST", links["preferences"] + "/erase"),
        ("GET", links["unsubscribe"]),
        ("POST", links["unsubscribe"]),
    ]:
        r = client.request(method, path, data={"confirm": "yes", "List-Unsubscribe": "One-Click"})
        done = (method, path) in {("POST", links["unsubscribe"]), ("POST", links["preferences"] + "/erase")}
        assert r.status_code in ((200, 400, 410) if done else (400, 410)), (method, path, r.status_code)
        assert address.split("@")[0] not in r.text and "medical" not in r.text
    assert row(address).model_dump() == before


def test_links_of_an_erased_subscriber_never_act_on_the_next_signup(client, settings):
    """The review's attack (H1): after Mallory's erase the victim signs up. On SQLite the
    victim used to get Mallory's id, and her old links confirmed, showed and unsubscribed them."""
    links, mallory_id = erased_mallory(client, settings)
    client.post("/subscribe", data={"email": "victim@example.org", "interests": "private medical research"})
    assert row("victim@example.org").id != mallory_id  # AUTOINCREMENT: an id is never handed out twice
    assert_dead_for(client, links, "victim@example.org")
    assert row("victim@example.org").status is SubscriberStatus.pending


def test_links_never_match_a_row_that_got_the_same_id(client, settings):
    """Even a row with the very same id (a store whose last id was freed before the migration
    to AUTOINCREMENT, a restored backup) is a different subscriber to every old link."""
    links, mallory_id = erased_mallory(client, settings)
    with configured_session() as session:
        session.add(
            Subscriber(
                id=mallory_id,
                email="victim@example.org",
                email_key="victim@example.org",
                interests="private medical research",
            )
        )
    assert_dead_for(client, links, "victim@example.org")
    assert row("victim@example.org").status is SubscriberStatus.pending


def test_links_name_a_random_key_never_the_row_id(client, settings):
    """L13: a token's payload is the subscriber's random token_key and version, so links show
    neither ids nor how many subscribers there are. Every way a row is made gives it a key of
    its own: the signup's INSERT … ON CONFLICT, an operator's import, a bulk Core insert."""
    import base64
    import json

    from sqlalchemy import insert

    from newsletter import admin

    client.post("/subscribe", data={"email": "ada@example.org"})
    admin.add_subscriber(settings, "bob@example.org", "", "weekly", 5, confirmed=True)
    with configured_session() as session:
        session.execute(
            insert(Subscriber.__table__),
            [{"email": a, "email_key": a, "profile": {}} for a in ("c@x.org", "d@x.org")],
        )
    ada = row("ada@example.org")
    token = link_in(mail_to(settings, "ada@example.org")[-1], "confirm").rsplit("/", 1)[1]
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert payload == {"s": ada.token_key, "v": 0}
    with configured_session() as session:
        keys = [s.token_key for s in session.exec(select(Subscriber))]
    assert len(keys) == 4 and len(set(keys)) == 4 and all(len(k) == 22 for k in keys)


def test_links_signed_before_the_upgrade_still_work_for_their_own_row_only(client, settings):
    """Links mailed before revision 0002 name the row id. They keep working (one-click
    unsubscribe above all) for the row that existed when they were signed, and never for a row
    made afterwards that got the same id."""
    from datetime import timedelta

    from newsletter.tokens import Purpose, _serializer

    client.post("/subscribe", data={"email": "ada@example.org"})
    ada = row("ada@example.org")
    legacy = _serializer(settings, Purpose.unsubscribe).dumps({"s": ada.id, "v": 0})
    assert client.get(f"/unsubscribe/{legacy}").status_code == 200
    with configured_session() as session:  # as if the row had been made after the link was signed
        session.get(Subscriber, ada.id).created_at += timedelta(seconds=5)
    assert client.get(f"/unsubscribe/{legacy}").status_code == 410
    with configured_session() as session:
        session.get(Subscriber, ada.id).created_at -= timedelta(seconds=5)
    assert client.post(f"/unsubscribe/{legacy}").status_code == 200
    assert row("ada@example.org").status is SubscriberStatus.unsubscribed


def test_message_ids_show_no_subscriber_id(client, settings):
    """L13: Message-IDs used to end in ".{issue}.{subscriber}" or ".confirm.{subscriber}". Now
    their local part is time, process and 64 random bits, then the kind of email."""
    import re

    from newsletter import admin
    from newsletter.papers import sample_feed_path

    for address in ("ada@example.org", "bob@example.org"):
        client.post("/subscribe", data={"email": address, "interests": "robots"})
        client.post(path_of(link_in(mail_to(settings, address)[-1], "confirm")))
    admin.ingest(settings, path=sample_feed_path())
    assert admin.send_now(settings, "weekly")["counts"]["sent"] == 2
    for address in ("ada@example.org", "bob@example.org"):
        kinds = []
        for message in mail_to(settings, address):
            shape = re.fullmatch(r"<\d+\.\d+\.\d+\.(\w+)@news\.example\.org>", message["Message-ID"])
            assert shape, message["Message-ID"]
            kinds.append(shape.group(1))
        assert kinds == ["confirm", "welcome", "digest"]


# ---- L1: key rotation and weak secrets ------------------------------------------------------

OLD_KEY = "old-secret-0123456789abcdef"
NEW_KEY = "Xq0dJm3-kR9wZ2v_Lp8sT4yB7nC1fH6gA5eU0iO3rE9tY2uWx"


def test_links_signed_with_a_rotated_key_still_work(configure, sqlite_url):
    """After NEWSLETTER_SECRET_KEY changes, with the old key in NEWSLETTER_SECRET_KEY_FALLBACKS,
    a one-click unsubscribe from an email signed with the old key still works (RFC 8058, and
    CAN-SPAM's 30 days); new links are signed with the new key only."""
    from newsletter.tokens import Purpose, TokenError, make_token, read_token

    old = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SECRET_KEY=OLD_KEY)
    with TestClient(create_app(old), base_url=BASE) as c:
        c.post("/subscribe", data={"email": "ada@example.org"})
        c.post(path_of(link_in(mail_to(old, "ada@example.org")[-1], "confirm")))
    unsubscribe = path_of(mail_to(old, "ada@example.org")[-1]["List-Unsubscribe"].split(",")[0].strip(" <>"))
    one_click = {"content": b"List-Unsubscribe=One-Click", "headers": {"content-type": FORM}}

    rotated_away = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SECRET_KEY=NEW_KEY)
    with TestClient(create_app(rotated_away), base_url=BASE) as c:
        assert c.post(unsubscribe, **one_click).status_code == 400  # the old key is gone
    rotated = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_SECRET_KEY=NEW_KEY,
        NEWSLETTER_SECRET_KEY_FALLBACKS=f"another-old-key-0123456789, {OLD_KEY}",
    )
    with TestClient(create_app(rotated), base_url=BASE) as c:
        assert c.post(unsubscribe, **one_click).status_code == 200
    assert row("ada@example.org").status is SubscriberStatus.unsubscribed
    assert rotated.signing_keys == ["another-old-key-0123456789", OLD_KEY, NEW_KEY]

    fresh = make_token(rotated, Purpose.preferences, "key", 1)
    assert read_token(rotated_away, Purpose.preferences, fresh).subscriber_key == "key"
    with pytest.raises(TokenError):
        read_token(old, Purpose.preferences, fresh)


@pytest.mark.parametrize(
    "secret", ["a" * 60, "password12345678", "k" * 32, "abcd" * 20, "short", "dev-insecure-secret-change-me"]
)
def test_production_refuses_a_weak_secret(secret):
    """Like Django's deploy check: at least 50 characters, at least 5 different ones. The
    message names the setting and says how to make one."""
    from newsletter.config import ConfigError, Settings

    with pytest.raises(ConfigError) as refused:
        Settings(_env_file=None, mode="production", base_url=BASE, secret_key=secret)
    message = str(refused.value)
    assert "NEWSLETTER_SECRET_KEY" in message and "secrets.token_urlsafe(48)" in message
    assert Settings(_env_file=None, mode="dev", secret_key=secret).secret_key == secret  # dev allows it


def test_production_takes_a_strong_secret_and_refuses_a_default_fallback():
    import secrets

    from newsletter.config import DEV_SECRET, ConfigError, Settings

    strong = secrets.token_urlsafe(48)
    settings = Settings(
        _env_file=None, mode="production", base_url=BASE, secret_key=strong, **PRODUCTION_IDENTITY
    )
    assert settings.signing_keys == [strong]
    for fallback in (DEV_SECRET, "too-short"):
        with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY_FALLBACKS"):
            Settings(
                _env_file=None,
                mode="production",
                base_url=BASE,
                secret_key=strong,
                secret_key_fallbacks=fallback,
                **PRODUCTION_IDENTITY,
            )
    # A key production accepted before (16+ characters) can serve out its links as a fallback.
    kept = Settings(
        _env_file=None,
        mode="production",
        base_url=BASE,
        secret_key=strong,
        secret_key_fallbacks=OLD_KEY,
        **PRODUCTION_IDENTITY,
    )
    assert kept.signing_keys == [OLD_KEY, strong]
