"""The admin login's guarantees over HTTP (the app in-process, its database on PostgreSQL):
the cookie's attributes, a session ends when its credential goes, no open redirect, and the
password hash from `newsletter admin hash-password`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from newsletter.errors import ConfigError
from newsletter.passwords import hash_password, verify_password
from newsletter.web.app import create_app
from tests.conftest import ROOT, process_env

PASSWORD = "a long admin password"
TOKEN = "first-admin-token-0123456789"
NEWSLETTER = str(Path(sys.executable).parent / "newsletter")  # the installed command


@pytest.fixture
def settings_for(configure, pg_url):
    def make(**overrides: str):
        return configure(NEWSLETTER_DATABASE_URL=pg_url, **overrides)

    return make


def log_in(client: TestClient, secret: str, next_path: str = "/admin"):
    form = client.get("/admin/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    return client.post(
        "/admin/login", data={"secret": secret, "csrf": csrf, "next": next_path}, follow_redirects=False
    )


def test_the_session_cookie_is_secure_httponly_strict_and_for_admin_only(settings_for):
    settings = settings_for(NEWSLETTER_ADMIN_PASSWORD_HASH=hash_password(PASSWORD))
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        answer = log_in(client, PASSWORD)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("newsletter_admin="))
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "secure", "path", "max-age", "samesite"} <= attributes
        assert "SameSite=strict" in cookie and "Path=/admin" in cookie
        assert f"Max-Age={settings.admin_session_hours * 3600}" in cookie
        assert client.get("/admin", follow_redirects=False).status_code == 200


def test_a_session_ends_when_its_token_is_removed_or_the_password_changes(settings_for):
    old = settings_for(NEWSLETTER_ADMIN_TOKENS=TOKEN, NEWSLETTER_ADMIN_PASSWORD_HASH=hash_password(PASSWORD))
    with TestClient(create_app(old), base_url="https://news.example.org") as client:
        assert log_in(client, TOKEN).status_code == 303
        by_token = client.cookies["newsletter_admin"]
    with TestClient(create_app(old), base_url="https://news.example.org") as client:
        assert log_in(client, PASSWORD).status_code == 303
        by_password = client.cookies["newsletter_admin"]

    rotated = settings_for(
        NEWSLETTER_ADMIN_TOKENS="second-admin-token-0123456789",
        NEWSLETTER_ADMIN_PASSWORD_HASH=hash_password(PASSWORD),  # the same password, a new hash
    )
    with TestClient(create_app(rotated), base_url="https://news.example.org") as client:
        for cookie in (by_token, by_password):
            client.cookies.set("newsletter_admin", cookie, domain="news.example.org", path="/admin")
            answer = client.get("/admin", follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/login")
        # A forged cookie fares no better.
        client.cookies.set("newsletter_admin", by_token[:-2] + "xx", domain="news.example.org", path="/admin")
        assert client.get("/admin", follow_redirects=False).status_code == 303


def test_a_logged_out_cookie_is_refused_on_the_embedded_store_and_old_ends_are_dropped(configure, sqlite_url):
    """Logging out names the session on the server (SQLite here, the embedded default), so a
    copy of its cookie is refused; a session opened alongside stays open; and the ends of
    sessions whose cookies have expired anyway are dropped at the next logout."""
    from datetime import timedelta

    from fastapi.responses import Response
    from sqlmodel import select

    from newsletter.models import EndedAdminSession, utcnow
    from newsletter.testing import configured_session
    from newsletter.web.admin_pages.session import end_session

    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_ADMIN_TOKENS=TOKEN)
    with configured_session() as session:
        session.add(EndedAdminSession(sid="long-expired", expires_at=utcnow() - timedelta(hours=1)))
    cookies = []
    for _ in range(2):
        with TestClient(create_app(settings), base_url="https://news.example.org") as client:
            assert log_in(client, TOKEN).status_code == 303
            cookies.append(client.cookies["newsletter_admin"])
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        client.cookies.set("newsletter_admin", cookies[0], domain="news.example.org", path="/admin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text).group(1)
        answer = client.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False)
        assert answer.status_code == 303
    for cookie, status in ((cookies[0], 303), (cookies[1], 200)):
        with TestClient(create_app(settings), base_url="https://news.example.org") as client:
            client.cookies.set("newsletter_admin", cookie, domain="news.example.org", path="/admin")
            assert client.get("/admin/subscribers", follow_redirects=False).status_code == status
    with configured_session() as session:
        [ended] = session.exec(select(EndedAdminSession)).all()
    assert ended.sid != "long-expired" and ended.expires_at > utcnow() + timedelta(hours=7)
    # A double click's second logout may pass the session check before the first commits;
    # ending a session twice keeps one row and raises nothing.
    for _ in range(2):
        with configured_session() as session:
            end_session(Response(), session, settings, ended.sid)
    with configured_session() as session:
        assert [e.sid for e in session.exec(select(EndedAdminSession)).all()] == [ended.sid]


def test_login_never_redirects_off_the_admin_pages(settings_for):
    settings = settings_for(NEWSLETTER_ADMIN_TOKENS=TOKEN, NEWSLETTER_ADMIN_LOGIN_RATE_PER_IP="100")
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        for target in ("https://evil.example/", "//evil.example/admin", "/admin\\@evil.example", "/archive"):
            answer = log_in(client, TOKEN, next_path=target)
            assert answer.headers["location"] == "/admin", target
        assert log_in(client, TOKEN, next_path="/admin/issues").headers["location"] == "/admin/issues"
        client.cookies.clear()
        # Sent to log in from a page with a query: back to that page, query and all.
        to_login = client.get("/admin/preview?interests=graph+networks", follow_redirects=False)
        assert (
            to_login.headers["location"] == "/admin/login?next=/admin/preview%3Finterests%3Dgraph%2Bnetworks"
        )
        login_page = client.get(to_login.headers["location"]).text
        assert 'name="next" value="/admin/preview?interests=graph+networks"' in login_page
        back = log_in_with_page(client, login_page, TOKEN)
        assert back.headers["location"] == "/admin/preview?interests=graph+networks"


def log_in_with_page(client: TestClient, page: str, secret: str):
    fields = dict(re.findall(r'name="(csrf|next)" value="([^"]*)"', page))
    return client.post("/admin/login", data={**fields, "secret": secret}, follow_redirects=False)


def test_every_open_login_tab_logs_in(settings_for):
    """Each login page set a new login cookie, so with two tabs open (every admin tab lands on
    the login page when a session ends) the first one's right password got a 403."""
    settings = settings_for(NEWSLETTER_ADMIN_PASSWORD_HASH=hash_password(PASSWORD))
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        first = client.get("/admin/login").text
        client.get("/admin/login")  # a second tab
        assert log_in_with_page(client, first, "wrong password").status_code == 401
        assert log_in_with_page(client, first, PASSWORD).status_code == 303
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        client.get("/admin/login")
        client.cookies.set("newsletter_admin_login", "chosen-by-someone-else", path="/admin/login")
        forced = client.get("/admin/login").text  # a cookie we did not make is never taken over
        assert "chosen-by-someone-else" not in forced


def test_without_a_password_or_token_the_admin_pages_stay_shut(settings_for):
    settings = settings_for()
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        page = client.get("/admin/login")
        assert "The admin pages are off" in page.text and 'name="secret"' not in page.text
        assert log_in_without_form(client).status_code == 403  # no login form, no CSRF value
        assert client.get("/admin", follow_redirects=False).status_code == 303


def log_in_without_form(client: TestClient):
    return client.post("/admin/login", data={"secret": "", "csrf": ""}, follow_redirects=False)


def test_hash_password_command_makes_a_hash_that_verifies():
    run = subprocess.run(
        [NEWSLETTER, "admin", "hash-password", "--stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=process_env(),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    made = run.stdout.strip()
    assert made.startswith("$argon2id$") and PASSWORD not in run.stdout
    assert verify_password(made, PASSWORD) and not verify_password(made, PASSWORD + "!")

    short = subprocess.run(
        [NEWSLETTER, "admin", "hash-password", "--stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=process_env(),
        check=False,
    )
    assert short.returncode == 1 and "password too short" in short.stderr and not short.stdout


def test_a_hash_that_is_not_argon2id_is_refused_at_startup(configure):
    with pytest.raises(ConfigError, match="NEWSLETTER_ADMIN_PASSWORD_HASH.*hash-password"):
        configure(NEWSLETTER_ADMIN_PASSWORD_HASH="plain-text-password")


def test_an_admin_error_page_is_an_admin_page(settings_for):
    """An unknown admin address answered the public 404, "start from the signup page" and all."""
    settings = settings_for(NEWSLETTER_ADMIN_PASSWORD_HASH=hash_password(PASSWORD))
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        assert log_in(client, PASSWORD).status_code == 303
        page = client.get("/admin/nope")
        assert page.status_code == 404 and "Paper Digest admin" in page.text
        assert "There is no admin page at this address." in page.text and "signup page" not in page.text
        assert 'href="https://news.example.org/admin">Back to the dashboard' in page.text
        assert "signup page" in client.get("/nope").text  # the public site keeps its own
