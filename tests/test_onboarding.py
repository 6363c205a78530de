"""Onboarding by example: the papers a reader ticks at signup or in preferences seed their
profile like "more like this" votes (over HTTP, in-process app, SQLite and PostgreSQL)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter import admin
from newsletter.models import Paper
from newsletter.papers import sample_feed_path
from newsletter.testing import configured_session
from newsletter.web import create_app
from tests.conftest import link_in, text_part
from tests.test_web import outbox, path_of, subscriber

THEME = re.compile(r"continual|lifelong|catastrophic|replay", re.I)  # many sample papers share it


@pytest.fixture
def settings(configure, db_url):
    settings = configure(NEWSLETTER_DATABASE_URL=db_url, NEWSLETTER_SIGNUP_RATE_PER_IP="50")
    admin.ingest(settings, path=sample_feed_path())
    return settings


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), base_url="https://news.example.org") as c:
        yield c


def offered(page: str) -> dict[str, int]:
    """The picker's papers on a page: title → id."""
    found = re.findall(r'name="liked" value="(\d+)"[^>]*> <span><strong>(.*?)</strong>', page)
    return {title.replace("&#39;", "'").replace("&amp;", "&"): int(pid) for pid, title in found}


def on_theme(page: str, n: int = 3) -> list[int]:
    """The first `n` offered papers about continual learning: what a reader of that ticks."""
    return [pid for title, pid in offered(page).items() if THEME.search(title)][:n]


def confirm(client, settings, address):
    msg = [m for m in outbox(settings) if m["To"] == address][-1]
    assert client.post(path_of(link_in(msg, "confirm"))).status_code == 200


def test_the_signup_page_lists_this_periods_papers_to_pick_from(client):
    page = client.get("/").text
    papers = offered(page)
    assert 10 <= len(papers) <= 20
    assert "papers like these" in page.lower()


def test_picks_wait_for_the_confirmation_then_seed_the_profile(client, settings):
    picks = on_theme(client.get("/").text)
    assert len(picks) == 3
    client.post("/subscribe", data={"email": "new@example.org", "liked": [str(i) for i in picks]})
    waiting = subscriber("new@example.org")
    assert waiting.profile == {} and waiting.pending_likes == picks  # nothing learned before the link
    confirm(client, settings, "new@example.org")
    sub = subscriber("new@example.org")
    assert sub.pending_likes is None and sub.profile["votes"] == len(picks)
    with configured_session() as session:
        liked_titles = {session.get(Paper, i).title for i in picks}
    assert set(sub.profile["liked"]) == liked_titles


def test_the_confirm_page_shows_the_interests_and_picks_confirming_applies(configure, settings):
    """Anyone may sign a pending address up again, and the latest signup's interests and picks
    are what confirming applies: the page with the button shows them (escaped), nothing else."""
    settings = configure(
        NEWSLETTER_DATABASE_URL=settings.database_url, NEWSLETTER_CONFIRM_COOLDOWN_MINUTES="0"
    )
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        client.post("/subscribe", data={"email": "ada@example.org", "interests": "robots"})
        url = path_of(link_in(outbox(settings)[0], "confirm"))
        page = client.get(url).text
        assert "<strong>robots</strong>" in page and "ticked" not in page
        picks = on_theme(client.get("/").text, 2)
        client.post(
            "/subscribe",
            data={
                "email": "ada@example.org",
                "interests": "<b>crypto</b> scams",
                "liked": [str(i) for i in picks],
            },
        )
        page = client.get(url).text
        assert "&lt;b&gt;crypto&lt;/b&gt; scams" in page and "<b>crypto" not in page and "robots" not in page
        assert "2 papers ticked" in page
        assert client.post(url).status_code == 200
    sub = subscriber("ada@example.org")
    assert sub.interests == "<b>crypto</b> scams" and sub.profile["votes"] == 2


def test_a_reader_with_no_interests_gets_a_first_digest_like_their_picks(client, settings):
    picks = on_theme(client.get("/").text)
    client.post("/subscribe", data={"email": "picky@example.org", "liked": [str(i) for i in picks]})
    confirm(client, settings, "picky@example.org")
    client.post("/subscribe", data={"email": "blank@example.org"})
    confirm(client, settings, "blank@example.org")
    admin.send_now(settings, "weekly")
    digests = {m["To"]: text_part(m) for m in outbox(settings) if "List-Id" in m}

    def top5(text):
        return re.findall(r"^\d+\. (.+)$", text, flags=re.M)[:5]

    assert "Because you liked" in digests["picky@example.org"]
    assert sum(bool(THEME.search(t)) for t in top5(digests["picky@example.org"])) >= 4
    assert sum(bool(THEME.search(t)) for t in top5(digests["blank@example.org"])) <= 2


def test_a_signup_for_a_confirmed_address_never_changes_its_profile(client, settings):
    client.post("/subscribe", data={"email": "ada@example.org", "interests": "robots"})
    confirm(client, settings, "ada@example.org")
    before = subscriber("ada@example.org").profile
    picks = list(offered(client.get("/").text).values())[:3]
    answer = client.post("/subscribe", data={"email": "ada@example.org", "liked": [str(i) for i in picks]})
    assert answer.status_code == 202
    sub = subscriber("ada@example.org")
    assert sub.profile == before and sub.pending_likes is None


def test_ids_the_picker_does_not_offer_are_dropped_and_bad_ones_refused(client, settings):
    with configured_session() as session:
        every = [p.id for p in session.exec(select(Paper))]
    offered_ids = set(offered(client.get("/").text).values())
    not_offered = [i for i in every if i not in offered_ids][:2]
    client.post(
        "/subscribe", data={"email": "x@example.org", "liked": [str(i) for i in [*not_offered, 999999]]}
    )
    assert subscriber("x@example.org").pending_likes is None
    bad = client.post("/subscribe", data={"email": "y@example.org", "liked": "not-a-number"})
    assert bad.status_code == 422 and subscriber("y@example.org") is None


def test_the_preferences_page_applies_picks_at_once(client, settings):
    client.post("/subscribe", data={"email": "ada@example.org", "interests": ""})
    confirm(client, settings, "ada@example.org")
    link = link_in([m for m in outbox(settings) if m["Subject"].startswith("Welcome")][-1], "preferences")
    page = client.get(path_of(link)).text
    picks = on_theme(page, 2)
    saved = client.post(path_of(link), data={"liked": [str(i) for i in picks]})
    assert saved.status_code == 200 and "Papers you liked" in saved.text
    sub = subscriber("ada@example.org")
    assert sub.profile["votes"] == len(picks) and sub.interests == ""  # the other settings stay
    # The "Saved" page reloaded (the browser posts the form again), then one pick ticked again
    # beside a new one: each post added the same papers' weight again (0.12, 0.24, 0.35 …).
    client.post(path_of(link), data={"liked": [str(i) for i in picks]})
    another = next(i for i in offered(page).values() if i not in picks)
    client.post(path_of(link), data={"liked": [str(picks[0]), str(another)]})
    again = subscriber("ada@example.org").profile
    assert again["votes"] == len(picks) + 1 and len(again["liked"]) == len(picks) + 1
    # The page shows what she liked ticked (it showed every box empty, as if nothing were kept)
    shown = client.get(path_of(link)).text
    already = set(map(int, re.findall(r'value="(\d+)" checked disabled', shown)))
    assert already == {*picks, another} and "(liked already)" in shown
    assert not already & set(offered(shown).values())  # not posted again


def test_a_topic_that_a_new_ingest_brings_joins_the_picker(client, monkeypatch):
    """The list is worked out again when the period's papers change, and it covers topics: three
    papers on a subject the sample feed never mentions, with no upvotes, are still offered."""
    monkeypatch.setattr("newsletter.onboarding.PICKER_SECONDS", 0.0)  # no minute-long reuse here
    assert not any("weather" in title.lower() for title in offered(client.get("/").text))
    with configured_session() as session:
        for title in (
            "Weather Forecasting with Graph Networks",
            "Probabilistic Weather Forecasting from Atmospheric Reanalysis",
            "Medium-Range Weather Forecasting Ensembles",
        ):
            abstract = "Weather forecasting trained on atmospheric reanalysis ensembles of past weather."
            session.add(Paper(title=title, title_key=title.lower(), abstract=abstract))
    assert any("weather" in title.lower() for title in offered(client.get("/").text))
