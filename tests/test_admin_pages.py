"""The admin pages in a real browser: headless Chromium (Playwright) on uvicorn and PostgreSQL.

One uvicorn process serves a throwaway PostgreSQL database and sends its mail to an aiosmtpd
server; this process plans and sends issues with the same settings (`newsletter.admin`), as the
CLI would. Each browser context comes from its own documentation-range IP (X-Forwarded-For), so
the login rate limit of one test never trips another.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from newsletter.passwords import hash_password
from tests.conftest import (
    BASE_ENV,
    Mailbox,
    WebServer,
    Worker,
    free_port,
    link_in,
    migrated_pg,
    process_env,
    text_part,
)
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, check_accessible, go, heading, shot, submit

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")

PASSWORD = "correct horse battery staple"
TOKEN = "admin-token-0123456789abcdef"
LOGIN_LIMIT = 4  # login attempts per IP per minute on the test server
DAILY_READERS = ["daily1@example.org", "daily2@example.org"]
IPS = (f"203.0.113.{i}" for i in itertools.count(1))
READERS = {
    "ada@example.org": "graph neural networks for molecules",
    "grace@example.org": "robot learning and reinforcement learning",
    "alan@example.org": "large language model agents and tool use",
}


class Site:
    def __init__(self, url: str, box: Mailbox) -> None:
        self.url, self.box = url, box

    @staticmethod
    def settings():
        from newsletter.config import get_settings

        return get_settings()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    from newsletter import admin
    from newsletter.config import reset_settings
    from newsletter.papers import sample_feed_path

    tmp = tmp_path_factory.mktemp("admin")
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    port = free_port()
    patch = pytest.MonkeyPatch()
    server = None
    with migrated_pg() as db_url:
        env = {
            **BASE_ENV,
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(controller.port),
            "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
            "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
            "NEWSLETTER_ADMIN_PASSWORD_HASH": hash_password(PASSWORD),
            "NEWSLETTER_ADMIN_TOKENS": TOKEN,
            "NEWSLETTER_ADMIN_LOGIN_RATE_PER_IP": str(LOGIN_LIMIT),
        }
        for key in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        reset_settings()
        try:
            settings = Site.settings()
            admin.ingest(settings, path=sample_feed_path())
            for address, interests in READERS.items():
                admin.add_subscriber(settings, address, interests, "weekly", 5, confirmed=True)
            for address in DAILY_READERS:
                admin.add_subscriber(settings, address, "diffusion models", "daily", 3, confirmed=True)
            admin.add_subscriber(settings, "pending@example.org", "", "weekly", 5, confirmed=False)
            server = WebServer(process_env(**env), tmp / "web.log", port=port)
            yield Site(server.url, box)
        finally:
            if server is not None:
                server.stop()
            controller.stop()
            patch.undo()
            reset_settings()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(site, browser):
    """A page in a fresh context (own cookies, own client IP, nothing from outside); a
    Content-Security-Policy violation on any page fails the test."""
    contexts, violations = [], []

    def make(width: int = 1100, height: int = 900):
        context = browser.new_context(
            viewport={"width": width, "height": height}, extra_http_headers={"X-Forwarded-For": next(IPS)}
        )
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(site.url) else r.abort())
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda msg: "Content Security Policy" in msg.text and violations.append((page.url, msg.text)),
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not violations, violations


def log_in(site, page, secret: str = PASSWORD, then: str = "/admin") -> int:
    go(page, site.url + then)
    page.get_by_label("Admin password or token").fill(secret)
    return submit(page, page.get_by_role("button", name="Log in").click)


def csrf_of(page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value")


def delivery_count() -> int:
    from sqlalchemy import func
    from sqlmodel import select

    from newsletter.models import Delivery
    from newsletter.testing import configured_session

    with configured_session() as session:
        return session.exec(select(func.count()).select_from(Delivery)).one()


def subscriber_row(address: str):
    from newsletter import subscriptions as subs
    from newsletter.testing import configured_session

    with configured_session() as session:
        sub = subs.find_by_email(session, address)
        return None if sub is None else (sub.id, sub.status.value)


# ---- login ----------------------------------------------------------------------------------


def test_login_refuses_wrong_secrets_alike_then_opens_the_dashboard(site, new_page):
    from sqlmodel import select

    from newsletter import admin
    from newsletter.stats import subscriber_counts
    from newsletter.testing import configured_session

    result = admin.send_now(site.settings(), "weekly")
    assert result["counts"]["sent"] == len(READERS)
    [digest] = site.box.wait_for(1, to="grace@example.org", subject="Paper Digest")
    from newsletter.bounces.events import BounceEvent, record_bounce
    from newsletter.models import Delivery

    with configured_session() as session:  # a DSN naming Alan's digest (its VERP address)
        [delivery] = session.exec(
            select(Delivery).where(Delivery.subscriber_id == subscriber_row("alan@example.org")[0])
        ).all()
        record_bounce(
            session,
            site.settings(),
            BounceEvent(kind="hard", delivery_id=delivery.id, status="5.1.1", source="dsn"),
        )

    page = new_page()
    assert go(page, site.url + "/admin") == 200  # after the redirect to the login page
    assert page.url.startswith(site.url + "/admin/login?next=/admin")
    check_accessible(page)
    shot(page, "admin-login")

    answers = set()
    for wrong in ("not the password", TOKEN[:-1], PASSWORD.upper()):
        assert log_in(site, page, wrong) == 401
        answers.add(page.locator("#login-error").inner_text())
    assert answers == {"That did not work. Check the password or token and try again."}

    # A reader votes from the digest, so the dashboard has engagement to show.
    vote = new_page()
    assert go(vote, link_in(digest, "vote")) == 200
    assert submit(vote, vote.get_by_role("button").first.click) == 200

    assert log_in(site, page, PASSWORD) == 200
    assert heading(page) == "Dashboard"
    with configured_session() as session:
        counts = subscriber_counts(session)
    stats = page.locator(".stats li").all_inner_texts()
    assert sorted(stats) == sorted(f"{status}\n{n}" for status, n in counts.items())
    assert page.locator("svg.chart rect.bar").count() == 12
    last_week = page.locator("#growth tbody tr").last.locator("td").all_text_contents()  # folded away
    # Everyone joined this week; the bounced reader left in it.
    assert [int(n) for n in last_week[1:]] == [
        counts["confirmed"],
        counts["confirmed"] + counts["bounced"],
        counts["bounced"],
    ]
    row = page.locator("#issues tbody tr").first.locator("td").all_inner_texts()
    # sent, open, failed, bounced, complaints, votes
    assert row[1:] == [str(len(READERS)), "0", "0", "1", "0", "1 / 0"]
    check_accessible(page)
    shot(page, "admin-dashboard")

    # The bounced reader's page shows the report and what it did.
    assert go(page, f"{site.url}/admin/subscribers/{subscriber_row('alan@example.org')[0]}") == 200
    [bounce] = page.locator("#bounces tbody tr").all_inner_texts()
    assert bounce.split("\t")[1:4] == ["hard", str(result["issue_id"]), "dsn"] and "5.1.1" in bounce
    assert page.locator("#status").inner_text() == "bounced"

    # The admin token opens a session too.
    other = new_page()
    assert log_in(site, other, TOKEN, then="/admin/issues") == 200
    assert heading(other) == "Issues"


def test_login_attempts_are_rate_limited(site, new_page):
    page = new_page()
    for _ in range(LOGIN_LIMIT):
        assert log_in(site, page, "guessing") == 401
    assert log_in(site, page, PASSWORD) == 429  # even the right password, until the minute is up
    assert "Too many login attempts" in page.locator("main").inner_text()


def test_a_post_without_the_csrf_token_is_refused(site, new_page):
    page = new_page()
    assert log_in(site, page) == 200
    sub_id, status = subscriber_row("ada@example.org")
    for form in ({}, {"csrf": "forged"}):
        answer = page.request.post(f"{site.url}/admin/subscribers/{sub_id}/unsubscribe", form=form)
        assert answer.status == 403
    assert subscriber_row("ada@example.org") == (sub_id, status)  # nothing changed
    # Not logged in at all: to the login page, nothing changed.
    stranger = new_page()
    answer = stranger.request.post(
        f"{site.url}/admin/subscribers/{sub_id}/unsubscribe", form={"csrf": "x"}, max_redirects=0
    )
    assert answer.status == 303 and "/admin/login" in answer.headers["location"]
    assert subscriber_row("ada@example.org") == (sub_id, status)


def test_logout_ends_the_session(site, new_page):
    """Logging out ends the session on the server too: a copy of the cookie taken before (a
    shared computer, a stolen cookie) opens nothing after, while another session stays open."""
    page, other = new_page(), new_page()
    assert log_in(site, page) == 200 and log_in(site, other) == 200
    [cookie] = [c for c in page.context.cookies() if c["name"] == "newsletter_admin"]
    copy = new_page()
    copy.context.add_cookies([cookie])
    assert go(copy, site.url + "/admin/subscribers") == 200 and heading(copy) == "Subscribers"
    assert submit(page, page.get_by_role("button", name="Log out").click) == 200
    assert heading(page) == "Log in"
    assert "You are logged out." in page.locator("[role=status]").inner_text()
    assert go(page, site.url + "/admin/subscribers") == 200
    assert heading(page) == "Log in"
    assert not [c for c in page.context.cookies() if c["name"] == "newsletter_admin"]
    assert go(copy, site.url + "/admin/subscribers") == 200 and heading(copy) == "Log in"
    assert go(other, site.url + "/admin/subscribers") == 200 and heading(other) == "Subscribers"


# ---- subscribers ----------------------------------------------------------------------------


def test_search_a_subscriber_see_history_unsubscribe_and_erase_with_confirmation(site, new_page):
    page = new_page()
    assert log_in(site, page, then="/admin/subscribers") == 200
    page.get_by_label("Address contains").fill("GRACE")
    assert submit(page, page.get_by_role("button", name="Search").click) == 200
    [found] = page.locator("#subscribers tbody tr").all_inner_texts()
    assert found.startswith("grace@example.org\tconfirmed")
    check_accessible(page)
    shot(page, "admin-subscribers")

    assert submit(page, page.get_by_role("link", name="grace@example.org").click) == 200
    assert heading(page) == "grace@example.org"
    assert "imported" in page.locator("#consent").inner_text()
    assert "None reported." in page.locator("main").inner_text()
    check_accessible(page)
    shot(page, "admin-subscriber")

    assert submit(page, page.get_by_role("button", name="Unsubscribe").click) == 200
    assert page.locator("#status").inner_text() == "unsubscribed"
    assert "unsubscribed:operator" in page.locator("#consent").inner_text()

    # Erasing takes a confirmation page and the address typed out.
    assert submit(page, page.get_by_role("link", name="Erase everything…").click) == 200
    assert heading(page) == "Erase grace@example.org?"
    check_accessible(page)
    page.get_by_label("Type the address to confirm").fill("grace@example.com")
    assert submit(page, page.get_by_role("button", name="Erase for good").click) == 400
    assert subscriber_row("grace@example.org") is not None
    page.get_by_label("Type the address to confirm").fill("Grace@Example.org")
    assert submit(page, page.get_by_role("button", name="Erase for good").click) == 200
    assert "The subscriber is erased" in page.locator("[role=status]").inner_text()
    assert subscriber_row("grace@example.org") is None

    from newsletter.suppression import suppression_for
    from newsletter.testing import configured_session
    from newsletter.validation import normalise_email

    with configured_session() as session:
        assert suppression_for(session, normalise_email("grace@example.org")[1]) is not None


# ---- issues ---------------------------------------------------------------------------------


def test_issue_page_follows_sending_and_pauses_and_resumes(site, new_page):
    from newsletter.ledger import plan_issue
    from newsletter.models import Frequency, saved_id
    from newsletter.testing import configured_session

    refused, delivered = DAILY_READERS
    site.box.replies[refused] = "550 5.1.1 No such user here"
    with configured_session() as session:
        issue, planned = plan_issue(session, Frequency.daily, site.settings().local_now())
        issue_id = saved_id(issue)
    assert planned == len(DAILY_READERS)
    page = new_page()
    assert log_in(site, page, then=f"/admin/issues/{issue_id}") == 200
    assert page.locator("meta[http-equiv=refresh]").count() == 1  # it reloads itself while open
    assert page.locator("#progress").get_attribute("value") == "0"
    assert page.locator("#progress").get_attribute("max") == str(planned)
    check_accessible(page)

    assert submit(page, page.get_by_role("button", name="Pause sending").click) == 200
    assert "The issue is paused" in page.locator("[role=status]").inner_text()
    assert "paused by the operator" in page.locator("#paused").inner_text()
    assert page.locator("meta[http-equiv=refresh]").count() == 0

    assert submit(page, page.get_by_role("button", name="Resume sending").click) == 200
    assert "resumed" in page.locator("[role=status]").inner_text()
    assert site.box.wait_for(1, to=delivered, timeout=30)
    for _ in range(50):
        go(page, site.url + f"/admin/issues/{issue_id}")
        if page.locator("meta[http-equiv=refresh]").count() == 0:
            break
        page.wait_for_timeout(200)
    assert page.locator("#progress").get_attribute("value") == str(planned)
    assert page.get_by_role("button", name="Pause sending").count() == 0
    [failure] = page.locator("#failures tbody tr").all_inner_texts()
    assert failure.startswith(f"{refused}\tfailed") and "550 5.1.1 No such user here" in failure
    check_accessible(page)
    shot(page, "admin-issue")


# ---- preview --------------------------------------------------------------------------------


def test_preview_shows_the_ranked_digest_in_a_sandboxed_frame_and_sends_a_test(site, new_page):
    page = new_page()
    assert log_in(site, page, then="/admin/preview") == 200
    page.get_by_label("Interests").fill("robot learning, reinforcement learning")
    assert submit(page, page.get_by_role("button", name="Preview").click) == 200
    ranked = page.locator("#ranking tbody tr")
    assert ranked.count() > 0
    frame = page.frame_locator("iframe.digest")
    first_title = ranked.first.locator("td").nth(1).inner_text()
    assert first_title in frame.locator("body").inner_text()
    assert page.locator("iframe.digest").get_attribute("sandbox") == ""
    check_accessible(page, narrow=False)
    # The whole page in the viewport: a full-page shot resizes it, and the frame repaints late.
    page.set_viewport_size({"width": 1100, "height": page.evaluate("document.body.scrollHeight")})
    page.wait_for_timeout(300)
    shot(page, "admin-preview", fit=False)

    # A test send of what is shown: through the real SMTP server, "[Test]", no ledger row.
    deliveries = delivery_count()
    page.get_by_label("Send this digest to").fill("operator@example.org")
    assert submit(page, page.get_by_role("button", name="Send test").click) == 200
    assert "The test digest is sent" in page.locator("[role=status]").inner_text()
    [test] = site.box.wait_for(1, to="operator@example.org", subject="[Test]")
    assert first_title in text_part(test) and "List-Unsubscribe" in test
    assert delivery_count() == deliveries
    assert page.get_by_label("Interests").input_value() == "robot learning, reinforcement learning"
    site.box.replies["refused@example.org"] = "550 5.7.1 Not today"
    page.get_by_label("Send this digest to").fill("refused@example.org")
    assert submit(page, page.get_by_role("button", name="Send test").click) == 400
    assert "Test not sent" in page.locator("#preview-error").inner_text()

    # The frame's document cannot be opened outside the admin pages' session.
    src = page.locator("iframe.digest").get_attribute("src")
    stranger = new_page()
    answer = stranger.request.get(src, max_redirects=0)
    assert answer.status == 303

    page.get_by_label("Interests").fill("")
    page.get_by_label("…or a subscriber's address").fill("nobody@example.org")
    assert submit(page, page.get_by_role("button", name="Preview").click) == 400
    assert "no subscriber" in page.locator("#preview-error").inner_text()
    assert re.search(r"nobody@example\.org", page.locator("#preview-error").inner_text())


# ---- import ---------------------------------------------------------------------------------


def test_import_a_csv_dry_run_first_then_import(site, new_page, tmp_path):
    rows = [
        ("new.reader@example.org", "protein folding", "weekly", None),
        ("not-an-address", "", "weekly", "invalid"),
        ("new.reader@example.org", "again", "weekly", "duplicate"),
        ("ada@example.org", "something else", "daily", None),  # known: left as it is
        ("hourly@example.org", "", "hourly", "bad frequency"),
    ]
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text("email,interests,frequency\n" + "".join(f"{e},{i},{f}\n" for e, i, f, _ in rows))
    bad_lines = [str(n + 2) for n, row in enumerate(rows) if row[3]]  # line 1 is the header

    page = new_page()
    assert log_in(site, page, then="/admin/import") == 200
    check_accessible(page)
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    assert submit(page, page.get_by_role("button", name="Dry run").click) == 200
    assert heading(page) == "Import subscribers"
    assert page.locator("#report-title").inner_text() == "Dry run of readers.csv"
    problems = page.locator("#problems tbody tr")
    assert [problems.nth(i).locator("td").first.inner_text() for i in range(problems.count())] == bad_lines
    assert subscriber_row("new.reader@example.org") is None  # a dry run writes nothing
    check_accessible(page)
    shot(page, "admin-import-dry-run")

    # Import asks for the checked file again; another file is only checked, never imported.
    other = tmp_path / "other.csv"
    other.write_text("email\nsomeone.else@example.org\n")
    page.get_by_label("CSV file").set_input_files(str(other))
    assert submit(page, page.get_by_role("button", name="Import").click) == 200
    assert "not the file" in page.locator("#import-error").inner_text()
    assert subscriber_row("someone.else@example.org") is None

    # No file (the browser's `required` stops this form; the server refuses it too).
    answer = page.request.post(f"{site.url}/admin/import", multipart={"csrf": csrf_of(page)})
    assert answer.status == 400 and "Choose a CSV file." in answer.text()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    assert submit(page, page.get_by_role("button", name="Dry run").click) == 200
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    assert submit(page, page.get_by_role("button", name="Import").click) == 200
    assert page.locator("#report-title").inner_text() == "Imported readers.csv"
    assert subscriber_row("new.reader@example.org")[1] == "pending"
    assert subscriber_row("ada@example.org")[1] == "confirmed"
    [confirm] = site.box.wait_for(1, to="new.reader@example.org", subject="onfirm")
    assert link_in(confirm, "confirm").startswith(site.url)
    shot(page, "admin-import")


# ---- an issue going out through real workers ------------------------------------------------


class SlowMailbox(Mailbox):
    """An SMTP server that takes a moment per message, so sending can be watched."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook
        await asyncio.sleep(0.4)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.integration
def test_watch_an_issue_go_out_through_celery_workers(pg_url, redis_db, tmp_path, browser, configure):
    """PostgreSQL, Redis, a real Celery worker, uvicorn and an SMTP server: the operator sends
    with `send --now --no-wait` and watches the issue page reload itself until every reader
    has the digest."""
    from newsletter import admin
    from newsletter.papers import sample_feed_path

    box = SlowMailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    port = free_port()
    env = {
        "NEWSLETTER_DATABASE_URL": pg_url,
        "NEWSLETTER_BROKER_URL": redis_db,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(controller.port),
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
        "NEWSLETTER_ADMIN_TOKENS": TOKEN,
        "NEWSLETTER_BATCH_SIZE": "4",
    }
    settings = configure(**env)
    worker = Worker(process_env(**env), concurrency=1, log_path=tmp_path / "worker.log")
    web = WebServer(process_env(**env), tmp_path / "web.log", port=port)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        worker.wait_ready()
        admin.ingest(settings, path=sample_feed_path())
        readers = [f"reader{n}@example.org" for n in range(12)]
        for address in readers:
            admin.add_subscriber(settings, address, "reinforcement learning", "weekly", 3, confirmed=True)
        issue_id = admin.send_now(settings, "weekly", wait=False)["issue_id"]

        page = context.new_page()
        site = Site(web.url, box)
        assert log_in(site, page, TOKEN, then=f"/admin/issues/{issue_id}") == 200
        progress = page.locator("#progress")
        assert int(progress.get_attribute("value")) < len(readers)  # caught while sending
        assert page.locator("meta[http-equiv=refresh]").count() == 1
        # No script and no click: the page reloads itself until the issue is out.
        deadline = time.monotonic() + 60
        while progress.get_attribute("value") != str(len(readers)) and time.monotonic() < deadline:
            page.wait_for_timeout(500)  # the page's own meta refresh does the reloading
        assert progress.get_attribute("value") == str(len(readers))
        assert page.locator("meta[http-equiv=refresh]").count() == 0
        assert page.locator("#counts tbody td").all_inner_texts() == [
            "0",
            "0",
            "0",
            str(len(readers)),
            "0",
            "0",
        ]
        assert sorted(m["To"] for m in box.parsed()) == sorted(readers)
    finally:
        context.close()
        web.stop()
        worker.stop()
        controller.stop()
