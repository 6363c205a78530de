"""/archive: every edition reachable, a page at a time, newest first."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from newsletter.models import Frequency, Issue
from newsletter.testing import configured_session
from newsletter.web import create_app
from newsletter.web.pages import ARCHIVE_PAGE

BASE = "https://news.example.org"


@pytest.fixture
def client(configure, sqlite_url):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def add_weekly_issues(count: int) -> list[int]:
    """`count` weekly editions (listed without readers), oldest first; the first has one paper."""
    with configured_session() as session:
        issues = [
            Issue(frequency=Frequency.weekly, period=f"{2000 + n // 50}-W{n % 50 + 1:02d}", title="t")
            for n in range(count)
        ]
        for n, issue in enumerate(issues):
            issue.paper_ids = list(range(1, 2 + n % 3))
        session.add_all(issues)
        session.flush()
        return [i.id for i in issues]


def listed(page: str) -> list[int]:
    return [int(i) for i in re.findall(rf'<li><a href="{BASE}/archive/(\d+)"', page)]


def older_link(page: str) -> str | None:
    found = re.search(rf'<a href="{BASE}(/archive\?before=\d+)" rel="next">Older editions</a>', page)
    return found and found.group(1)


def test_every_edition_is_a_page_or_two_away_newest_first(client):
    """More than a page of editions: the "Older editions" links lead through all of them, each
    once, and every page after the first links back to the newest."""
    ids = add_weekly_issues(ARCHIVE_PAGE + 7)
    first = client.get("/archive")
    assert first.status_code == 200 and listed(first.text) == ids[::-1][:ARCHIVE_PAGE]
    assert "Newest editions" not in first.text
    link = older_link(first.text)
    assert link is not None
    second = client.get(link)
    assert second.status_code == 200 and listed(second.text) == ids[::-1][ARCHIVE_PAGE:]
    assert f'<a href="{BASE}/archive">Newest editions</a>' in second.text
    assert older_link(second.text) is None  # the oldest edition is on it
    assert "(1 paper)" in second.text and "(1 papers)" not in second.text
    assert "(2 papers)" in second.text


def test_a_page_before_the_oldest_edition_says_so(client):
    oldest = add_weekly_issues(2)[0]
    page = client.get(f"/archive?before={oldest}")
    assert page.status_code == 200 and listed(page.text) == []
    assert "no older editions" in page.text and f'href="{BASE}/archive">Newest editions' in page.text
    assert older_link(client.get("/archive").text) is None  # one page holds them all


@pytest.mark.parametrize("before", ["", "0", "-3", "abc", "1.5", "5_0", "2147483648", "99999999999"])
def test_a_cursor_no_edition_can_have_is_a_422_page(client, before):
    page = client.get(f"/archive?before={before}")
    assert page.status_code == 422 and "<h1>Invalid request</h1>" in page.text
    assert "must be the number of an edition" in page.text
    api = client.get(f"/archive?before={before}", headers={"accept": "application/json"})
    assert api.status_code == 422 and api.json()["error"] == "Invalid request"
