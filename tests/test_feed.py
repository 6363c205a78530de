"""/archive.xml: the public archive as an Atom 1.0 feed that a feed reader (feedparser) accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import feedparser
from fastapi.testclient import TestClient
from markupsafe import escape

from newsletter import admin
from newsletter.ledger import plan_issue
from newsletter.models import Frequency, Subscriber, SubscriberStatus
from newsletter.papers import sample_feed_path
from newsletter.testing import configured_session
from newsletter.web import create_app

WEEK_48 = datetime(2026, 11, 23, 8, tzinfo=UTC)


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "link":
            self.links.append(dict(attrs))


def test_the_archive_feed_is_atom_with_one_entry_per_issue_linking_to_its_page(configure, sqlite_url):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_BRAND_NAME="Lab & <Friends>")
    admin.ingest(settings, path=sample_feed_path())
    with configured_session() as session:  # a daily edition is archived once it has a reader
        daily = {"email": "d@example.org", "email_key": "d@example.org", "frequency": Frequency.daily}
        session.add(Subscriber(**daily, status=SubscriberStatus.confirmed))
    with configured_session() as session:
        plan_issue(session, Frequency.weekly, WEEK_48)
        plan_issue(session, Frequency.weekly, WEEK_48 + timedelta(days=7))
        plan_issue(session, Frequency.daily, WEEK_48 + timedelta(days=8))
    with TestClient(create_app(settings), base_url=settings.base_url) as client:
        answer = client.get("/archive.xml")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/atom+xml")
        feed = feedparser.parse(answer.content)
        assert not feed.bozo, feed.bozo_exception  # well-formed
        assert feed.version == "atom10"
        assert feed.feed.title == "Lab & <Friends>: past issues"  # escaped in the XML, whole here
        assert feed.feed.id == "https://news.example.org/archive.xml"
        assert {link.rel: link.href for link in feed.feed.links} == {
            "self": "https://news.example.org/archive.xml",
            "alternate": "https://news.example.org/archive",
        }
        titles = [entry.title for entry in feed.entries]
        assert titles == [
            "Lab & <Friends>, 2026-12-01",
            "Lab & <Friends>, week 49 of 2026",
            "Lab & <Friends>, week 48 of 2026",
        ]
        for entry in feed.entries:
            assert entry.id == entry.link and entry.updated_parsed is not None
            page = client.get(entry.link.removeprefix(settings.base_url))
            assert page.status_code == 200 and escape(entry.title) in page.text
        # Newest issue first; the feed's date is its newest entry's.
        assert feed.feed.updated == feed.entries[0].updated

        archive = Links()
        archive.feed(client.get("/archive").text)
    assert {
        "rel": "alternate",
        "type": "application/atom+xml",
        "title": "Lab & <Friends>: past issues",
        "href": "https://news.example.org/archive.xml",
    } in archive.links


def test_an_empty_archive_is_still_a_valid_feed(configure, sqlite_url):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    with TestClient(create_app(settings), base_url=settings.base_url) as client:
        feed = feedparser.parse(client.get("/archive.xml").content)
    assert not feed.bozo and feed.version == "atom10"
    assert feed.entries == [] and feed.feed.updated_parsed is not None
