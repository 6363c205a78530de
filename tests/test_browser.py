"""The pages and the digest email in a real browser: headless Chromium (Playwright) on uvicorn.

One uvicorn process serves a SQLite store and sends its mail in-process to an aiosmtpd server;
this process ingests papers and sends digests with the same settings (`newsletter.admin`), as
`newsletter send --now` would. NEWSLETTER_BASE_URL names the local server, so the forms' absolute
actions and the emails' links work in the browser as they do in production. Each browser context
comes from its own documentation-range IP (X-Forwarded-For, which uvicorn trusts from 127.0.0.1),
so the per-IP signup limit of one test never trips another.

Screenshots go to artifacts/screenshots/ (gitignored test output). Run with
UPDATE_DOCS_SCREENSHOTS=1 to refresh the README's copies in docs/screenshots/ as well.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest
from aiosmtpd.controller import Controller

from newsletter.config import get_settings
from tests.conftest import (
    BASE_ENV,
    ROOT,
    SECRET,
    Mailbox,
    WebServer,
    free_port,
    html_part,
    link_in,
    process_env,
    text_part,
)

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("NEWSLETTER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "artifacts" / "screenshots"
DOC_SHOTS = ROOT / "docs" / "screenshots"
SIGNUP_LIMIT = 3  # signups per IP per minute on the test server
POW_DIFFICULTY = 3000  # the signup form's proof of work is on: every signup here runs its script
THUMB_HOST = "papers.example.org"  # served by the browser context, never by the network
IPS = (f"198.51.100.{i}" for i in itertools.count(1))

# A paper with every link and a thumbnail, so the email's images and link row are exercised.
ROBOT_PAPER = {
    "title": "Dexterous Robot Hands Learn Household Tasks from Human Video",
    "abstract": (
        "We teach a robot hand household manipulation from human video. Robot learning with "
        "reinforcement learning for control, a learned reward from video, and sim-to-real "
        "transfer let the policy fold towels and open jars on a real robot."
    ),
    "authors": [
        "Ada Lovelace",
        "Alan Turing",
        "Grace Hopper",
        "Hedy Lamarr",
        "Katherine Johnson",
        "Barbara Liskov",
        "Edsger Dijkstra",
    ],
    "keywords": ["robot learning", "reinforcement learning", "control", "manipulation"],
    "arxiv_id": "2501.01234",
    "url": f"https://{THUMB_HOST}/papers/2501.01234",
    "code_url": "https://github.com/example/dexterous-hands",
    "project_url": f"https://{THUMB_HOST}/projects/dexterous-hands",
    "thumbnail": f"https://{THUMB_HOST}/thumbs/2501.01234.png",
    "upvotes": 2,
    "source": "test",
    "summary": "A robot hand learns chores from people's videos.",
    "organization": "Example Robotics Lab",
    "github_stars": 321,
}


# ---- the site: uvicorn + SQLite + aiosmtpd, settings shared with this process ---------------


class Site:
    def __init__(self, url: str, box: Mailbox, db_url: str) -> None:
        self.url, self.box, self.db_url = url, box, db_url

    def settings(self):
        from newsletter.config import get_settings

        return get_settings()

    def send(self, frequency: str) -> dict:
        from newsletter import admin

        return admin.send_now(self.settings(), frequency)

    def digests(self, to: str) -> list:
        return [m for m in self.box.parsed(to) if "List-Id" in m]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    from newsletter import admin
    from newsletter.config import reset_settings
    from newsletter.db import _engines
    from newsletter.migrate import upgrade
    from newsletter.papers import PaperRecord, ingest_records, sample_feed_path
    from newsletter.testing import configured_session

    tmp = tmp_path_factory.mktemp("browser")
    db_url = f"sqlite:///{tmp / 'site.db'}"
    upgrade(db_url)
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    port = free_port()
    env = {
        **BASE_ENV,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(controller.port),
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
        "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
        "NEWSLETTER_SIGNUP_RATE_PER_IP": str(SIGNUP_LIMIT),
        "NEWSLETTER_CONFIRM_COOLDOWN_MINUTES": "0",
        "NEWSLETTER_SIGNUP_POW_DIFFICULTY": str(POW_DIFFICULTY),
        "NEWSLETTER_THUMBNAIL_HOSTS": THUMB_HOST,
    }
    patch = pytest.MonkeyPatch()
    for key in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
        patch.delenv(key)
    for key, value in env.items():
        patch.setenv(key, value)
    reset_settings()
    server = None
    try:
        admin.ingest(get_settings(), path=sample_feed_path())
        with configured_session() as session:
            ingest_records(session, [PaperRecord(**ROBOT_PAPER)])
        server = WebServer(process_env(**env), tmp / "web.log", port=port)
        yield Site(server.url, box, db_url)
    finally:
        if server is not None:
            server.stop()
        controller.stop()
        engine = _engines.pop(db_url, None)
        if engine is not None:
            engine.dispose()
        patch.undo()
        reset_settings()


# ---- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def thumbnail_png(browser) -> bytes:
    """A 544x286 PNG made by the browser itself: a stand-in for a paper's figure."""
    page = browser.new_page(viewport={"width": 600, "height": 320})
    bars = "".join(
        f'<div style="width:46px;height:{h}px;background:{c};border-radius:3px 3px 0 0"></div>'
        for h, c in zip(
            (90, 150, 120, 200, 170, 230),
            ("#93b4f5", "#5b8def", "#93b4f5", "#1a56db", "#5b8def", "#1a56db"),
            strict=False,
        )
    )
    page.set_content(
        '<div id="f" style="width:544px;height:286px;background:#eef2fb;box-sizing:border-box;'
        'padding:22px 40px 0;font:600 15px system-ui;color:#1f2933">Figure 1: success rate'
        '<div style="display:flex;align-items:flex-end;gap:28px;height:230px;'
        f'border-bottom:2px solid #52606d;margin-top:10px">{bars}</div></div>'
    )
    png = page.locator("#f").screenshot()
    page.close()
    return png


@pytest.fixture
def new_page(site, browser, thumbnail_png):
    """Pages from a fresh context: own cookies, own client IP, only local and stub requests.

    Every page's console is watched: a Content-Security-Policy violation (a style, script or
    image the page's policy refused) fails the test."""
    contexts, violations = [], []

    def make(
        width: int = 900, height: int = 900, color_scheme: str = "light", timezone_id: str | None = None
    ):
        context = browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,
            extra_http_headers={"X-Forwarded-For": next(IPS)},
            **({"timezone_id": timezone_id} if timezone_id else {}),
        )

        def route(r):
            url = r.request.url
            if url.startswith(site.url):
                return r.continue_()
            if urlparse(url).hostname == THUMB_HOST and url.endswith(".png"):
                return r.fulfill(body=thumbnail_png, content_type="image/png")
            return r.abort()  # hermetic: nothing leaves the machine

        context.route("**/*", route)
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


def shot(page, name: str, fit: bool = True) -> Path:
    """Save a screenshot under artifacts/ (and docs/ with UPDATE_DOCS_SCREENSHOTS=1).

    `fit` crops a page to its content (no empty canvas below); otherwise the viewport is shot.
    """
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if fit:
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": 200})
        page.screenshot(path=str(path), full_page=True)
        page.set_viewport_size(size)
    else:
        page.screenshot(path=str(path))
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_SHOTS / path.name)
    return path


def go(page, url: str) -> int:
    response = page.goto(url)
    assert response is not None
    return response.status


def submit(page, action) -> int:
    """Run `action` (a click or a key press that submits a form); the answer's status code."""
    with page.expect_navigation() as nav:
        action()
    return nav.value.status


def heading(page) -> str:
    return page.locator("h1").inner_text().strip()


# ---- accessibility, measured in the page ----------------------------------------------------

AUDIT_JS = r"""
() => {
  const parse = (c) => {
    const m = c && c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, base) => top.slice(0, 3).map((v, i) => v * top[3] + base[i] * (1 - top[3]));
  const lum = (rgb) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]);
  };
  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  const background = (el) => {  // composite every ancestor's background over the canvas
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.unshift(e);
    let rgb = dark ? [18, 18, 18] : [255, 255, 255];
    for (const e of chain) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) rgb = over(c, rgb);
    }
    return rgb;
  };
  const visible = (el) => {
    const s = getComputedStyle(el);
    return s.visibility !== 'hidden' && s.display !== 'none' && el.getClientRects().length > 0;
  };
  const lowContrast = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (['SCRIPT', 'STYLE', 'TITLE'].includes(el.tagName) || el.disabled) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !visible(el)) continue;
    const bg = background(el);
    const fg = over(parse(getComputedStyle(el).color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) {
      lowContrast.push({tag: el.tagName, cls: el.className, ratio: +ratio.toFixed(2),
                        text: el.textContent.trim().slice(0, 60)});
    }
  }
  const unlabelled = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (['hidden', 'submit', 'button', 'reset'].includes(el.type)) continue;
    const byFor = el.id && [...document.querySelectorAll('label')].some(
      (l) => l.htmlFor === el.id && l.textContent.trim());
    const wrapped = el.closest('label') && el.closest('label').textContent.trim();
    const aria = (el.getAttribute('aria-label') || '').trim() || el.getAttribute('aria-labelledby');
    if (!byFor && !wrapped && !aria) unlabelled.push(el.outerHTML.slice(0, 80));
  }
  const root = document.documentElement;
  return {lowContrast, unlabelled, scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
          lang: root.getAttribute('lang'), title: document.title};
}
"""


def audit(page) -> dict:
    return page.evaluate(AUDIT_JS)


def check_accessible(page, narrow: bool = True) -> None:
    """Labels, text contrast (light and dark) and, at 375 px, no horizontal scrolling."""
    where = page.url
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        result = audit(page)
        assert not result["unlabelled"], (where, result["unlabelled"])
        assert not result["lowContrast"], (where, scheme, result["lowContrast"])
    page.emulate_media(color_scheme="light")
    assert result["lang"] and result["title"], where
    if narrow:
        size = page.viewport_size
        page.set_viewport_size({"width": 375, "height": 740})
        result = audit(page)
        assert result["scrollWidth"] <= result["clientWidth"], (where, result)
        page.set_viewport_size(size)


def active_id(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.tagName")


def titles_in(msg) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", text_part(msg), flags=re.M)


# ---- the journey ----------------------------------------------------------------------------


def test_signup_confirm_preferences_digest_and_unsubscribe_in_the_browser(site, new_page):
    address = "Ada.Browser@example.org"
    page = new_page()

    # Sign up with the keyboard alone: Tab to each field, type, Enter on the button.
    assert go(page, site.url + "/") == 200
    check_accessible(page)
    assert page.locator("#website").bounding_box()["x"] < -1000  # the honeypot: off screen
    shot(page, "signup")
    page.set_viewport_size({"width": 375, "height": 740})
    page.emulate_media(color_scheme="dark")
    shot(page, "signup-375-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 900, "height": 900})
    for _ in range(6):
        page.keyboard.press("Tab")
        if active_id(page) == "email":
            break
    assert active_id(page) == "email"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "keyboard focus must be visible"
    page.keyboard.type(address)
    page.keyboard.press("Tab")
    assert active_id(page) == "interests"
    page.keyboard.type("medical image segmentation")
    page.keyboard.press("Tab")
    assert active_id(page) == "SUMMARY"  # "papers like these", folded: optional, one stop
    page.keyboard.press("Tab")
    assert active_id(page) == "BUTTON"
    assert submit(page, lambda: page.keyboard.press("Enter")) == 202
    assert heading(page) == "Check your inbox"
    check_accessible(page)

    # The confirmation email from the SMTP server; its link opens a page with a button.
    [confirm_mail] = site.box.wait_for(1, to="Ada.Browser@example.org", subject="confirm")
    confirm_url = link_in(confirm_mail, "confirm")
    assert confirm_url.startswith(site.url + "/confirm/")
    assert go(page, confirm_url) == 200
    assert heading(page) == "Confirm your subscription"
    assert address in page.locator("main").inner_text()
    assert "medical image segmentation" in page.locator("main").inner_text()  # what confirming applies
    check_accessible(page)
    shot(page, "confirm")
    assert submit(page, page.get_by_role("button", name="Yes, subscribe me").click) == 200
    assert heading(page) == "You're subscribed"
    check_accessible(page)
    site.box.wait_for(1, to=address, subject="Welcome")

    # The same link again: already confirmed, said plainly, with a way on.
    again = new_page()
    assert go(again, confirm_url) == 410
    assert heading(again) == "This link has already been used"
    assert again.get_by_role("link", name="Go to the signup page").is_visible()
    check_accessible(again)

    # The first digest follows the interests given at signup.
    assert submit(page, page.get_by_role("link", name="Edit my preferences").click) == 200
    assert heading(page) == "Your preferences"
    prefs_url = page.url
    check_accessible(page)
    shot(page, "preferences")
    assert site.send("weekly")["counts"]["sent"] >= 1
    [first] = site.digests(address)
    before = titles_in(first)
    assert len(before) == 10 and any("segment" in t.lower() for t in before[:2]), before

    # Change the preferences in the page: new interests, daily, three papers.
    page.locator("#interests").fill("robot learning and reinforcement learning for control")
    page.locator("#frequency").select_option("daily")
    page.locator("#max_papers").fill("3")
    assert submit(page, page.get_by_role("button", name="Save preferences").click) == 200
    assert "Saved" in page.locator("[role=status]").inner_text()
    assert page.locator("#frequency").input_value() == "daily"

    # The next digest (today's daily issue) follows the new preferences.
    site.send("daily")
    assert len(site.digests(address)) == 2
    second = site.digests(address)[-1]
    after = titles_in(second)
    assert len(after) == 3 and after[0] != before[0], (before, after)
    assert any(w in after[0].lower() for w in ("robot", "reinforcement", "control")), after
    assert not set(after) & set(before)  # a paper never reaches the same reader twice

    # View in browser: the same papers in the same order, as a page.
    view_url = re.search(r"View in your browser: (\S+)", text_part(second)).group(1)
    assert view_url.startswith(site.url + "/issues/")
    assert go(page, view_url) == 200
    shown = [t.strip() for t in page.locator("p.paper-title").all_inner_texts()]
    assert shown == after
    check_accessible(page)

    # Unsubscribe from the digest's link, by the page's button.
    unsubscribe_url = link_in(second, "unsubscribe")
    assert go(page, unsubscribe_url) == 200 and heading(page) == "Unsubscribe"
    check_accessible(page)
    assert submit(page, page.get_by_role("button", name="Unsubscribe").click) == 200
    assert heading(page) == "You're unsubscribed"
    check_accessible(page)
    go(page, prefs_url)
    assert "not active (unsubscribed)" in page.locator("[role=alert]").inner_text()
    assert page.get_by_role("button", name="Save preferences").is_disabled()


# ---- another site's form --------------------------------------------------------------------


def test_a_reader_picks_papers_like_these_at_signup_and_their_profile_starts_from_them(site, new_page):
    """The picker on the signup page: folded until opened, keyboard-operable, and the ticked
    papers count as "more like this" votes once the address is confirmed."""
    page = new_page()
    assert go(page, site.url + "/") == 200
    boxes = page.locator("details.picks input[name=liked]")
    assert boxes.count() >= 10 and not boxes.first.is_visible()  # folded: signing up stays short
    page.locator("details.picks summary").click()
    check_accessible(page)
    shot(page, "signup-picker")
    labels = page.locator("details.picks li strong")
    chosen = [labels.nth(0).inner_text(), labels.nth(2).inner_text()]
    boxes.nth(0).check()
    boxes.nth(2).focus()
    page.keyboard.press("Space")  # a checkbox ticks from the keyboard too
    assert boxes.nth(2).is_checked()
    page.fill("#email", "picker@example.org")
    assert submit(page, page.get_by_role("button", name="Subscribe").click) == 202
    [mail] = site.box.wait_for(1, to="picker@example.org", subject="confirm")
    assert go(page, link_in(mail, "confirm")) == 200
    assert submit(page, page.get_by_role("button", name="Yes, subscribe me").click) == 200
    [welcome] = site.box.wait_for(1, to="picker@example.org", subject="Welcome")
    assert go(page, link_in(welcome, "preferences")) == 200
    liked = page.locator("main").inner_text()
    assert all(title in liked for title in chosen), "the picks show as papers you liked"
    check_accessible(page)

    # The preferences page offers the same list later: one more tick there counts at once.
    page.locator("details.picks summary").click()
    items = page.locator("details.picks li")
    for n in (0, 2):  # what she ticked at signup shows ticked, and is not posted again
        assert items.nth(n).locator("input").is_checked() and items.nth(n).locator("input").is_disabled()
    more = items.nth(1).locator("strong").inner_text()
    assert more not in chosen
    items.nth(1).locator("input").check()
    assert submit(page, page.get_by_role("button", name="Teach my digest these").click) == 200
    assert go(page, link_in(welcome, "preferences")) == 200
    liked = page.locator("main").inner_text()
    assert all(title in liked for title in [*chosen, more]), "the later tick joined the picks"


# Chromium's ICU still names Kolkata by its old IANA name; tzdata keeps it as a link, so the
# server takes it as it is.
@pytest.mark.parametrize(
    ("zone", "reported"), [("Asia/Kolkata", "Asia/Calcutta"), ("America/Sao_Paulo",) * 2]
)
def test_the_signup_form_sends_the_browsers_time_zone(site, new_page, zone, reported):
    from sqlmodel import select

    from newsletter.models import Subscriber
    from newsletter.testing import configured_session

    address = f"zone.{zone.split('/')[1].lower()}@example.org"
    page = new_page(timezone_id=zone)  # Chromium reports this zone to Intl, as a reader's OS would
    assert go(page, site.url + "/") == 200
    assert page.locator("input[name=timezone]").input_value() == reported  # the page's script ran
    page.fill("#email", address)
    assert submit(page, lambda: page.click("button[type=submit]")) == 202
    with configured_session() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email_key == address)).one()
    assert sub.timezone == reported


def test_a_form_on_another_site_cannot_sign_anyone_up(site, new_page):
    """A page elsewhere that posts our signup form as soon as it loads (each visitor's browser
    signing up the attacker's list): the browser says where the form came from, the answer is
    403, and no confirmation goes out."""
    page = new_page()
    evil = (
        f'<form method="post" action="{site.url}/subscribe">'
        '<input name="email" value="csrf-victim@example.org"></form>'
        "<script>document.forms[0].submit()</script>"
    )
    page.route("https://evil.example/", lambda r: r.fulfill(body=evil, content_type="text/html"))
    with page.expect_response(f"{site.url}/subscribe") as answer:
        page.goto("https://evil.example/")
    assert answer.value.status == 403
    page.wait_for_load_state()
    assert heading(page) == "Not allowed"
    time.sleep(0.5)
    assert site.box.parsed("csrf-victim@example.org") == []


# ---- error states ---------------------------------------------------------------------------


def expired_token(purpose: str, subscriber_id: int = 1, age_days: int = 400) -> str:
    """A correctly signed token whose timestamp lies `age_days` in the past."""
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class Backdated(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_days * 86400

    return URLSafeTimedSerializer(SECRET, salt=f"newsletter.{purpose}", signer=Backdated).dumps(
        {"s": subscriber_id, "v": 0}
    )


def test_expired_and_forged_links_explain_what_to_do(site, new_page):
    page = new_page()
    assert go(page, f"{site.url}/confirm/{expired_token('confirm')}") == 410
    assert heading(page) == "This link has expired"
    assert "Sign up again" in page.locator("main").inner_text()
    check_accessible(page)
    shot(page, "error-expired-link")

    forged = expired_token("confirm", age_days=0)[:-4] + "AAAA"
    for path in (
        f"/confirm/{forged}",
        f"/preferences/{forged}",
        f"/unsubscribe/{forged}",
        "/confirm/not-a-token",
    ):
        assert go(page, site.url + path) == 400, path
        assert heading(page) == "This link is not valid"
        assert "Copy the whole link" in page.locator("main").inner_text()
    check_accessible(page)
    assert submit(page, page.get_by_role("link", name="Go to the signup page").click) == 200
    assert page.locator("#email").is_visible()


def test_invalid_address_gets_a_400_page_that_keeps_the_fields(site, new_page):
    page = new_page()
    go(page, site.url + "/")
    page.locator("#email").fill("ada@@example.org")
    page.locator("#interests").fill("graph neural networks")
    assert submit(page, page.get_by_role("button", name="Subscribe").click) == 400
    assert heading(page) == "Please check your address"
    assert "not valid" in page.locator("[role=alert]").inner_text()
    assert page.locator("#email").input_value() == "ada@@example.org"
    assert page.locator("#email").get_attribute("aria-invalid") == "true"
    assert page.locator("#interests").input_value() == "graph neural networks"
    check_accessible(page)
    shot(page, "error-invalid-address")

    # An empty address keeps the form too, and fixing it in place works.
    page.locator("#email").fill("")
    assert submit(page, page.get_by_role("button", name="Try again").click) == 400
    assert "enter an email address" in page.locator("[role=alert]").inner_text()
    page.locator("#email").fill("ada.fixed@example.org")
    assert submit(page, page.get_by_role("button", name="Try again").click) == 202
    assert heading(page) == "Check your inbox"
    assert site.box.wait_for(1, to="ada.fixed@example.org", subject="confirm")


def test_too_many_signups_get_a_429_page(site, new_page):
    page = new_page()
    statuses = []
    # A fixed one-minute window: 2 * limit + 1 tries trip it even across a window boundary.
    for i in range(2 * SIGNUP_LIMIT + 1):
        go(page, site.url + "/")
        page.locator("#email").fill(f"flood{i}@example.org")
        statuses.append(submit(page, page.get_by_role("button", name="Subscribe").click))
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {202}, statuses
    assert heading(page) == "Too many requests"
    assert "wait a minute" in page.locator("main").inner_text()
    check_accessible(page)


def test_archive_pages_are_accessible(site, new_page):
    from newsletter import admin

    # At least one issue exists, planned for a reader (an edition sent to nobody is not archived).
    admin.add_subscriber(site.settings(), "archive@example.org", "diffusion", "weekly", 3, confirmed=True)
    site.send("weekly")
    page = new_page()
    assert go(page, site.url + "/archive") == 200
    check_accessible(page)
    assert submit(page, page.locator("main li a").first.click) == 200
    cards = page.locator("article.paper")
    assert cards.count() > 0
    assert page.locator("article.paper h3 a").count() == cards.count()  # every title is a link
    robot = cards.filter(has_text=ROBOT_PAPER["title"])
    if robot.count():  # the weekly issue has it; the card shows what Hugging Face said
        card = robot.inner_text()
        assert ROBOT_PAPER["summary"] in card and "Example Robotics Lab" in card and "★\xa0321" in card
    check_accessible(page)
    assert go(page, site.url + "/archive/999999") == 404
    assert heading(page) == "Page not found"


def test_a_long_unbroken_url_in_an_abstract_wraps_on_a_phone(site, new_page):
    """A code URL in a paper's abstract, wider than a 375 px phone on its own, wraps inside the
    card: the archive page never scrolls sideways."""
    from sqlmodel import select

    from newsletter.cards import paper_snapshot
    from newsletter.models import Frequency, Issue, Paper
    from newsletter.papers import PaperRecord, ingest_records
    from newsletter.testing import configured_session

    url = ("https://github.com/facebookresearch/" + "segment-anything-2-realtime-streaming-" * 3)[:120]
    assert len(url) == 120 and " " not in url
    record = {**ROBOT_PAPER, "title": "Streaming Segmentation", "arxiv_id": "2501.09999", "url": None}
    record["abstract"] = f"Code and weights: {url} (Apache 2.0). We segment video as it streams."
    with configured_session() as session:
        ingest_records(session, [PaperRecord(**record)])
        paper = session.exec(select(Paper).where(Paper.arxiv_id == record["arxiv_id"])).one()
        issue = Issue(frequency=Frequency.weekly, period="2001-W01", title="Streaming", paper_ids=[paper.id])
        issue.papers_snapshot = [paper_snapshot(paper)]
        session.add(issue)
        session.flush()
        issue_id = issue.id
    page = new_page(width=375, height=740)
    assert go(page, f"{site.url}/archive/{issue_id}") == 200
    assert url in page.locator("article.paper").inner_text()
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1] == 375, width
    shot(page, "archive-issue-375")


# ---- the digest email -----------------------------------------------------------------------


class EmailHTML(HTMLParser):
    """Every start tag with its attributes, comments and <style> text of an email body."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.comments: list[str] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)

    def handle_comment(self, data):
        self.comments.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.tags if t == tag]


def outside_media_queries(css: str) -> str:
    """The CSS left once every @media block (braces balanced) is cut out."""
    out, i = [], 0
    while (start := css.find("@media", i)) >= 0:
        out.append(css[i:start])
        depth, j = 0, css.index("{", start)
        while True:
            depth += {"{": 1, "}": -1}.get(css[j], 0)
            j += 1
            if depth == 0:
                break
        i = j
    out.append(css[i:])
    return "".join(out)


def absolute(url: str) -> bool:
    parts = urlparse(url)
    return parts.scheme in ("https", "http") and bool(parts.netloc)


def main_table_width(page) -> float:
    return page.evaluate("document.querySelector('table.main').getBoundingClientRect().width")


def test_digest_email_renders_inline_table_layout_dark_and_phone(site, new_page):
    from newsletter import admin

    address = "layout@example.org"
    admin.add_subscriber(
        site.settings(), address, "robot learning and reinforcement learning", "weekly", 4, confirmed=True
    )
    site.send("weekly")
    [msg] = site.digests(address)
    html = html_part(msg)
    doc = EmailHTML(html)

    # Without <style> support: every class-styled element carries its style inline, and the
    # only CSS left in <head> is progressive enhancement (@media for dark mode and phones).
    css = "".join(doc.styles)
    assert "prefers-color-scheme: dark" in css and "max-width" in css
    assert outside_media_queries(css).strip() == ""
    for tag, attrs in doc.tags:
        if attrs.get("class"):
            assert attrs.get("style"), (tag, attrs)
        style = attrs.get("style", "").replace(" ", "").lower()
        assert not re.search(r"display:(flex|grid)|position:|float:", style), (tag, style)
    assert not doc.all("script") and not doc.all("link") and len(html.encode()) < 100_000

    # Table layout, 600 px at most, with a fixed-width table for Outlook's Word engine.
    tables = doc.all("table")
    assert tables and all(
        t.get("role") == "presentation"
        and t.get("cellpadding") == "0"
        and t.get("cellspacing") == "0"
        and t.get("border") == "0"
        for t in tables
    )
    [main] = [t for t in tables if "main" in t.get("class", "").split()]
    assert "max-width:600px" in main["style"].replace(" ", "")
    assert any("[if mso]" in c and 'width="600"' in c for c in doc.comments)

    # Dark mode and phones are declared; images are described and sized; links absolute.
    metas = {m.get("name"): m.get("content", "") for m in doc.all("meta")}
    assert "dark" in metas["color-scheme"] and "width=device-width" in metas["viewport"]
    images = doc.all("img")
    assert images, "the test paper's thumbnail should be in this reader's digest"
    for img in images:
        assert img.get("alt", "").strip() and img["width"].isdigit() and img["height"].isdigit()
        assert absolute(img["src"]) and "display:block" in img.get("style", "").replace(" ", "")
    hrefs = [a["href"] for a in doc.all("a")]
    assert len(hrefs) > 10 and all(absolute(h) for h in hrefs), hrefs
    assert html.count(f"{site.url}/vote/") == 8  # more/less for each of the 4 papers

    # In the browser: 600 px wide, phones without sideways scrolling, dark mode legible.
    page = new_page(width=640, height=900)
    page.set_content(html, wait_until="load")
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert 560 <= main_table_width(page) <= 600
    check_accessible(page, narrow=False)
    page.set_viewport_size({"width": 600, "height": 900})
    shot(page, "digest-600", fit=False)
    page.set_viewport_size({"width": 375, "height": 812})
    result = audit(page)
    assert result["scrollWidth"] <= result["clientWidth"], result
    assert page.evaluate("[...document.images].every(i => i.getBoundingClientRect().right <= 375)")
    shot(page, "digest-375", fit=False)
    page.set_viewport_size({"width": 600, "height": 900})
    page.emulate_media(color_scheme="dark")
    bg = page.evaluate("getComputedStyle(document.querySelector('table.main')).backgroundColor")
    assert bg == "rgb(31, 41, 55)", bg
    shot(page, "digest-dark", fit=False)

    # A client that drops <style> entirely still gets the layout from the inline styles.
    bare = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    page = new_page(width=1000, height=900)
    page.set_content(bare, wait_until="load")
    assert main_table_width(page) == 600
    check_accessible(page)
