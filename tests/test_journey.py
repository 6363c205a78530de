"""The subscriber's whole journey on real parts: uvicorn, Celery on Redis, PostgreSQL, SMTP.

Every step follows the links found in the emails the SMTP server captured.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import link_in

pytestmark = pytest.mark.integration


def status_of(db_url: str, address: str) -> str:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT status FROM subscriber WHERE email_key = :k"), {"k": address.casefold()}
        ).scalar()
    engine.dispose()
    return value


def local(url: str, stack) -> str:
    """Emails link to the public base URL; the test talks to the local server behind it."""
    return stack.web.url + "/" + url.split("/", 3)[3]


def test_signup_confirm_welcome_preferences_unsubscribe(stack):
    web, box = stack.web, stack.mailbox
    r = httpx.post(
        web.url + "/subscribe", data={"email": "Ada@Example.org", "interests": "reinforcement learning"}
    )
    assert r.status_code == 202 and "Check your inbox" in r.text

    [confirm] = box.wait_for(1, to="Ada@example.org")
    assert confirm.get_content_type() == "multipart/alternative"
    assert confirm["Message-ID"] and confirm["Date"] and confirm["Auto-Submitted"]
    confirm_url = link_in(confirm, "confirm")
    assert confirm_url.startswith("https://news.example.org/confirm/")
    assert confirm_url in confirm.get_body(("html",)).get_content()

    page = httpx.get(local(confirm_url, stack))  # what a scanner does: nothing changes
    assert page.status_code == 200 and status_of(stack.db_url, "ada@example.org") == "pending"
    assert httpx.post(local(confirm_url, stack)).status_code == 200
    assert status_of(stack.db_url, "ada@example.org") == "confirmed"

    [welcome] = box.wait_for(1, to="Ada@example.org", subject="Welcome")
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = welcome["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert one_click.startswith("https://news.example.org/unsubscribe/")
    prefs = link_in(welcome, "preferences")
    r = httpx.post(
        local(prefs, stack), data={"interests": "robot learning", "frequency": "daily", "max_papers": "7"}
    )
    assert r.status_code == 200 and "Saved" in r.text
    assert "robot learning" in httpx.get(local(prefs, stack)).text

    r = httpx.post(
        local(one_click, stack),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and not r.is_redirect
    assert status_of(stack.db_url, "ada@example.org") == "unsubscribed"

    # Signing up again takes a fresh opt-in: a new confirmation, not a silent comeback. (Inside
    # the 10-minute cooldown an attempt sends and changes nothing, so the clock is set back.)
    engine = create_engine(stack.db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscriber SET confirm_sent_at = confirm_sent_at - interval '1 hour'"))
    engine.dispose()
    httpx.post(web.url + "/subscribe", data={"email": "ada@example.org"})
    assert status_of(stack.db_url, "ada@example.org") == "pending"
    assert len(box.wait_for(2, to="Ada@example.org", subject="confirm")) == 2


def test_signup_for_known_addresses_looks_the_same(stack):
    web = stack.web
    answers = {
        httpx.post(web.url + "/subscribe", data={"email": a}).text
        for a in ("one@example.org", "one@example.org", "two@example.org")
    }
    assert len(answers) == 1
    assert len(stack.mailbox.wait_for(2)) == 2  # one confirmation each, not two for "one"
