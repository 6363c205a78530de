"""Branding settings and NEWSLETTER_TEMPLATES_DIR: what an operator changes without editing
installed files, seen in the emails and pages a reader gets."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from newsletter import admin, links
from newsletter.digests import renderer_for
from newsletter.errors import ConfigError
from newsletter.ledger import plan_issue
from newsletter.mail.render import render_email
from newsletter.mail.transactional import transactional_message
from newsletter.models import Frequency, Subscriber, SubscriberStatus
from newsletter.papers import sample_feed_path
from newsletter.templating import templates_dir
from newsletter.testing import configured_session
from newsletter.web import create_app

BRAND = {
    "NEWSLETTER_BRAND_NAME": "Lab <Weekly> & Co",
    "NEWSLETTER_ACCENT_COLOR": "#0a7d5a",
    "NEWSLETTER_LOGO_URL": "https://cdn.example.net/logo.png",
    "NEWSLETTER_FOOTER_TEXT": "Sent by the Example Lab <lab@example.net>",
}


def add_reader(address: str, status: SubscriberStatus) -> Subscriber:
    with configured_session() as session:
        sub = Subscriber(email=address, email_key=address, status=status, interests="language models")
        session.add(sub)
        session.flush()
        session.refresh(sub)
        session.expunge(sub)
        return sub


def journey_context(settings, sub: Subscriber) -> dict:
    return {
        "email": sub.email,
        "base_url": settings.base_url,
        "interests": sub.interests,
        "confirm_hours": 72,
        "next_digest": "on Monday",
        "period": "week",
        "cadence": "weekly",
        "confirm_url": links.confirm_url(settings, sub),
        "preferences_url": links.preferences_url(settings, sub),
        "unsubscribe_url": links.unsubscribe_url(settings, sub),
    }


def test_branding_reaches_every_email_and_page(configure, sqlite_url):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, **BRAND)
    sub = add_reader("ada@example.org", SubscriberStatus.confirmed)
    raw = transactional_message(settings, "welcome", sub).decode()
    assert "Subject: Welcome to Lab <Weekly> & Co" in raw
    rendered = render_email(settings, "welcome", journey_context(settings, sub))
    assert "Lab &lt;Weekly&gt; &amp; Co" in rendered.html and "<Weekly>" not in rendered.html  # escaped
    assert "Sent by the Example Lab &lt;lab@example.net&gt;" in rendered.html
    assert "Sent by the Example Lab <lab@example.net>" in rendered.text
    assert 'src="https://cdn.example.net/logo.png"' in rendered.html
    assert "background-color:#0a7d5a" in rendered.html.replace(" ", "")  # inlined by premailer
    with TestClient(create_app(settings), base_url=settings.base_url) as client:
        page = client.get("/")
    assert "<title>Subscribe · Lab &lt;Weekly&gt; &amp; Co</title>" in page.text
    assert "--accent: #0a7d5a" in page.text and "Sent by the Example Lab &lt;lab@" in page.text
    # The logo is the one image the page may load: its origin, nothing else.
    assert "img-src https://cdn.example.net;" in page.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NEWSLETTER_ACCENT_COLOR", "red", "NEWSLETTER_ACCENT_COLOR"),
        ("NEWSLETTER_ACCENT_COLOR", "#12345", "NEWSLETTER_ACCENT_COLOR"),
        ("NEWSLETTER_LOGO_URL", "http://cdn.example.net/logo.png", "must be an https:// URL"),
        ("NEWSLETTER_LOGO_URL", 'https://x.net/a"onerror=1', "must be an https:// URL"),
        ("NEWSLETTER_TEMPLATES_DIR", "/no/such/folder", "is not a folder"),
    ],
)
def test_bad_branding_is_refused_at_start(configure, variable, value, message):
    with pytest.raises(ConfigError, match=message):  # one line naming the setting
        configure(**{variable: value})


# ---- overriding every template ---------------------------------------------------------------


def marker(relative: str) -> str:
    return f"OVERRIDDEN-{relative.replace('/', '-').replace('.', '-')}"


def marked_copy(relative: str, text: str) -> str:
    """The packaged template with its marker where it renders: inside the content block of a
    template that extends another, after <body> in a base, else at the top (after the XML
    declaration of the feed)."""
    tag = marker(relative)
    if relative.endswith(".css"):
        return f"/* {tag} */\n{text}"
    if relative.endswith("_script.html"):
        return f"// {tag}\n{text}"
    if relative.endswith((".txt",)) and "{% extends" not in text:
        return f"{tag} {text}"
    if relative.endswith(".xml"):
        first, rest = text.split("\n", 1)
        return f"{first}\n<!-- {tag} -->\n{rest}"
    if "{% extends" in text and "{% block header %}" in text:  # a base for pages (admin/base.html)
        at = text.index("{% block header %}") + len("{% block header %}")
        return f"{text[:at]}\n{tag}\n{text[at:]}"
    if "{% extends" in text:
        at = text.index("{% block content %}") + len("{% block content %}")
        return f"{text[:at]}\n{tag}\n{text[at:]}"
    if "<body>" in text:  # before the doctype, premailer would drop it
        return text.replace("<body>", f"<body>\n<!-- {tag} -->", 1)
    return f"<!-- {tag} -->\n{text}" if relative.endswith(".html") else f"{tag}\n{text}"


ADMIN_TOKEN = "admin-token-0123456789abcdef"


def admin_pages(client: TestClient, reader_id: int | None, issue_id: int | None) -> list[str]:
    """Every admin page, logged in with the admin token."""
    import re

    login = client.get("/admin/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', login).group(1)
    client.post("/admin/login", data={"secret": ADMIN_TOKEN, "csrf": csrf}, follow_redirects=False)
    pages = [login]
    for url in (
        "/admin",
        "/admin/subscribers",
        f"/admin/subscribers/{reader_id}",
        f"/admin/subscribers/{reader_id}/erase",
        "/admin/issues",
        f"/admin/issues/{issue_id}",
        "/admin/preview?interests=robots",
        "/admin/import",
    ):
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
        pages.append(answer.text)
    missing = client.get("/admin/no-such-page")  # the admin's own error page
    assert missing.status_code == 404
    return [*pages, missing.text]


def packaged_templates() -> list[str]:
    root = templates_dir()
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.suffix in (".html", ".txt", ".css", ".xml")
    )


def test_every_packaged_template_can_be_overridden_from_the_templates_dir(configure, sqlite_url, tmp_path):
    override = tmp_path / "my-templates"
    for relative in packaged_templates():
        target = override / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(marked_copy(relative, (templates_dir() / relative).read_text()))
    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_TEMPLATES_DIR=str(override),
        NEWSLETTER_SIGNUP_POW_DIFFICULTY="10",  # so the signup form carries its proof-of-work script
        NEWSLETTER_ADMIN_TOKENS=ADMIN_TOKEN,  # so the admin pages can be walked
    )
    admin.ingest(settings, path=sample_feed_path())
    pending = add_reader("pending@example.org", SubscriberStatus.pending)
    reader = add_reader("reader@example.org", SubscriberStatus.confirmed)
    outputs: list[str] = []

    for kind, sub in (("confirm", pending), ("welcome", reader), ("already_subscribed", reader)):
        email = render_email(settings, kind, journey_context(settings, sub))
        outputs += [email.subject, email.text, email.html]
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        issue_id = issue.id
        first_paper = issue.paper_ids[0]
    renderer = renderer_for(settings, issue_id)
    digest = renderer.render(reader, renderer.items(reader, renderer.rank(reader)))
    outputs += [digest.subject, digest.text, digest.html]

    def path(url: str) -> str:
        return "/" + url.split("/", 3)[3]

    with TestClient(create_app(settings), base_url=settings.base_url) as client:
        for url in (
            "/",
            "/archive",
            f"/archive/{issue_id}",
            "/archive.xml",
            "/no-such-page",
            path(links.confirm_url(settings, pending)),
            path(links.preferences_url(settings, reader)),
            path(links.unsubscribe_url(settings, reader)),
            path(links.vote_url(settings, reader, issue_id, first_paper, 1)),
        ):
            answer = client.get(url)
            assert answer.status_code in (200, 404), (url, answer.status_code)
            outputs.append(answer.text)
        confirmed = client.post(path(links.confirm_url(settings, pending)))
        assert confirmed.status_code == 200
        outputs.append(confirmed.text)
        outputs += admin_pages(client, reader.id, issue_id)

    everything = "\n".join(outputs)
    missing = [relative for relative in packaged_templates() if marker(relative) not in everything]
    assert missing == []
    # An override is autoescaped like the packaged template it replaces.
    (override / "email/confirm/body.html").write_text(
        '{% extends "email/base.html" %}{% block content %}{{ email }}{% endblock %}'
    )
    hostile = {**journey_context(settings, pending), "email": "<script>alert(1)</script>@example.org"}
    html = render_email(settings.model_copy(update={"brand_name": "Fresh"}), "confirm", hostile).html
    assert "&lt;script&gt;" in html and "<script>" not in html


def test_an_override_folder_needs_only_the_files_it_changes(configure, sqlite_url, tmp_path):
    override = tmp_path / "just-one"
    (override / "email" / "welcome").mkdir(parents=True)
    (override / "email" / "welcome" / "subject.txt").write_text("You are in, {{ email }}!")
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_TEMPLATES_DIR=str(override))
    sub = add_reader("ada@example.org", SubscriberStatus.confirmed)
    email = render_email(settings, "welcome", journey_context(settings, sub))
    assert email.subject == "You are in, ada@example.org!"
    assert "You're subscribed" in email.html  # the packaged body, unchanged
