"""One-click feedback from inside the digest: "more like this" / "less like this"."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter import admin
from newsletter.digests import renderer_for
from newsletter.models import Delivery, Issue, Subscriber, Vote
from newsletter.papers import sample_feed_path
from newsletter.ranking import PROFILE_MAX_TITLES
from newsletter.testing import configured_session
from newsletter.web import create_app
from tests.conftest import WebServer, posted_at_once, process_env, text_part
from tests.test_digests import add_subscriber, digests


def sent_digest(configure, db_url: str, smtp_server, papers: int):
    """Ada's digest of `papers` papers, sent: the settings, the mailbox, her id and the email."""
    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=db_url, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port)
    )
    admin.ingest(settings, path=sample_feed_path())
    sub_id = add_subscriber("ada@example.org", "learning", max_papers=papers)
    admin.send_now(settings, "weekly")
    [msg] = digests(box, "ada@example.org")
    return settings, box, sub_id, msg


@pytest.fixture
def world(configure, db_url, smtp_server):
    settings, box, sub_id, msg = sent_digest(configure, db_url, smtp_server, papers=8)
    client = TestClient(create_app(settings))
    return type(
        "World", (), {"settings": settings, "box": box, "sub_id": sub_id, "msg": msg, "client": client}
    )


def vote_links(msg) -> list[tuple[str, str, str]]:
    """(paper title, more-like-this path, less-like-this path) for every paper in the email."""
    body = text_part(msg)
    blocks = re.findall(
        r"^\d+\. (.+?)$.*?More like this: (\S+)\s+Less like this: (\S+)", body, flags=re.M | re.S
    )
    return [(t, "/" + m.split("/", 3)[3], "/" + x.split("/", 3)[3]) for t, m, x in blocks]


def votes() -> list[Vote]:
    with configured_session() as session:
        return session.exec(select(Vote)).all()


def ranking(world) -> list[str]:
    with configured_session() as session:
        issue = session.exec(select(Issue)).one()
        sub = session.get(Subscriber, world.sub_id)
    renderer = renderer_for(world.settings, issue.id)
    return [renderer.views[r.paper_id].title for r in renderer.rank(sub)]


def test_every_paper_has_both_vote_links_in_text_and_html(world):
    links = vote_links(world.msg)
    assert len(links) == 8
    html = world.msg.get_body(("html",)).get_content()
    for _, more, less in links:
        assert more.split("/vote/")[1] in html and less.split("/vote/")[1] in html


def test_a_readers_vote_links_share_one_token_naming_them_and_the_issue(world):
    """One signature per reader and issue: every card's two links carry the same token, which
    names the reader and the issue only; the paper and the direction follow it in the path."""
    from newsletter.tokens import Purpose, read_token

    links = vote_links(world.msg)
    paths = [path for _, more, less in links for path in (more, less)]
    tokens = {path.split("/")[2] for path in paths}
    assert len(tokens) == 1
    data = read_token(world.settings, Purpose.vote, tokens.pop())
    with configured_session() as session:
        issue = session.exec(select(Issue)).one()
        assert data.subscriber_key == session.get(Subscriber, world.sub_id).token_key
    assert data.extra == {"i": issue.id}
    shown = [path.split("/")[3:] for path in paths]
    assert all(paper.isdigit() and int(paper) in issue.paper_ids for paper, _ in shown)
    assert [d for _, d in shown] == ["more", "less"] * len(links)


def test_vote_links_sent_before_one_token_per_reader_still_work(world):
    """A digest sent before the links above has one token per link, naming the paper and the
    direction itself (`/vote/{token}`): the page shows it, the button records it. Such a token
    with a paper or direction added in the path is refused, whatever they say."""
    from newsletter.links import _url
    from newsletter.tokens import Purpose, make_token

    with configured_session() as session:
        issue = session.exec(select(Issue)).one()
        sub = session.get(Subscriber, world.sub_id)
    paper = issue.paper_ids[1]
    token = make_token(
        world.settings, Purpose.vote, sub.token_key, sub.token_version, i=issue.id, p=paper, d=-1
    )
    old = _url(world.settings, f"/vote/{token}").split("news.example.org", 1)[1]
    page = world.client.get(old)
    assert page.status_code == 200 and "Less like this?" in page.text
    assert re.search(rf'action="[^"]*/vote/{re.escape(token)}"', page.text)
    for tampered in (f"{old}/{paper}/less", f"{old}/{issue.paper_ids[2]}/more"):
        assert world.client.post(tampered).status_code == 400
    assert votes() == []
    done = world.client.post(old)
    assert done.status_code == 200 and "Noted" in done.text
    [vote] = votes()
    assert (vote.paper_id, vote.direction) == (paper, -1)


def test_a_vote_for_a_paper_or_direction_the_link_does_not_allow_is_refused(world):
    _, more, _ = vote_links(world.msg)[0]
    base = more.rsplit("/", 2)[0]
    with configured_session() as session:
        issue = session.exec(select(Issue)).one()
    outside = max(issue.paper_ids) + 1000  # not a paper of this issue
    for path in (
        f"{base}/{outside}/more",
        f"{base}/{issue.paper_ids[0]}/sideways",
        f"{base}/-1/more",
        f"{base}/x1/more",
        f"{base}/{'9' * 40}/more",
        f"{base}/١/more",
        f"{base}?paper_id={issue.paper_ids[0]}&direction=more",  # the paper goes in the path only
    ):
        for method in ("GET", "POST"):
            r = world.client.request(method, path)
            assert r.status_code == 400, (method, path, r.status_code)
    assert votes() == []


def test_a_prefetch_records_nothing_the_button_records_once(world):
    title, more, _ = vote_links(world.msg)[3]
    for _ in range(3):  # a mail scanner following the link
        page = world.client.get(more)
        assert page.status_code == 200 and "More like this?" in page.text
    assert votes() == []
    first = world.client.post(more)
    assert first.status_code == 200 and "Noted" in first.text
    again = world.client.post(more)  # replayed
    assert again.status_code == 200 and "already voted" in again.text
    assert len(votes()) == 1 and votes()[0].direction == 1


def test_a_reader_who_left_is_told_so_on_the_vote_page_not_after_the_button(world):
    """An unsubscribed reader's vote page offered a working-looking button, which then answered
    "This link has already been used"."""
    _, more, _ = vote_links(world.msg)[0]
    admin.remove_subscriber(world.settings, "ada@example.org", erase=False)
    for answer in (world.client.get(more), world.client.post(more)):
        assert answer.status_code == 410 and "This subscription is not active" in answer.text
        assert "<form" not in answer.text.split("<main", 1)[-1].split("</main>", 1)[0]
    assert votes() == []


def test_a_json_client_gets_the_vote_and_the_reset_as_json(world):
    _, more, _ = vote_links(world.msg)[2]
    as_json = {"accept": "application/json"}
    assert world.client.post(more, headers=as_json).json() == {"status": "recorded"}
    assert world.client.post(more, json={}).json() == {"status": "already_voted"}
    prefs = "/" + re.search(r"https://\S+/preferences/\S+", text_part(world.msg)).group(0).split("/", 3)[3]
    assert world.client.post(prefs + "/reset-profile", headers=as_json).json() == {"status": "reset"}
    assert len(votes()) == 1


def test_a_vote_within_the_grace_period_says_so_and_counts_when_pressed_later(world):
    """With NEWSLETTER_VOTE_GRACE_SECONDS set, a reader's first press right after the digest
    arrived was told "You have already voted" and dropped; pressing again changed nothing."""
    title, more, _ = vote_links(world.msg)[0]
    graced = world.settings.model_copy(update={"vote_grace_seconds": 600})
    client = TestClient(create_app(graced))
    page = client.post(more)
    assert page.status_code == 200 and "already voted" not in page.text
    assert "nothing was recorded" in page.text and "10 minutes after the digest arrived" in page.text
    assert client.post(more, headers={"accept": "application/json"}).json() == {"status": "too_soon"}
    assert votes() == []
    with configured_session() as session:  # ten minutes later
        for delivery in session.exec(select(Delivery)):
            delivery.sent_at -= timedelta(minutes=11)
            session.add(delivery)
    assert "Noted: more papers like" in client.post(more).text and len(votes()) == 1


def test_forged_and_tampered_vote_links_are_refused(world):
    _, more, _ = vote_links(world.msg)[0]
    token = more.split("/vote/")[1]
    payload, rest = token.split(".", 1)
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["s"] = data["s"][:-1] + ("A" if data["s"][-1] != "A" else "B")  # someone else's profile
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    for path in (f"/vote/{forged}.{rest}", "/vote/nonsense", more[:-4] + "AAAA"):
        assert world.client.post(path).status_code == 400
    assert votes() == []


def test_a_vote_shifts_the_next_digest_and_says_why(world):
    before = ranking(world)
    liked, more, _ = vote_links(world.msg)[-1]  # the last paper shown
    world.client.post(more)
    after = ranking(world)
    assert after.index(liked) < before.index(liked)  # it, and papers like it, move up
    with configured_session() as session:
        issue = session.exec(select(Issue)).one()
        sub = session.get(Subscriber, world.sub_id)
    for _, more, _ in vote_links(world.msg)[-3:-1]:  # a few more likes: the profile leads
        world.client.post(more)
    with configured_session() as session:
        sub = session.get(Subscriber, world.sub_id)
    ranked = renderer_for(world.settings, issue.id).rank(sub)
    assert any(r.why.startswith("Because you liked “") for r in ranked), [r.why for r in ranked]


def test_less_like_this_moves_the_paper_down(world):
    before = ranking(world)
    disliked, _, less = vote_links(world.msg)[0]
    world.client.post(less)
    after = ranking(world)
    assert disliked not in after or after.index(disliked) > before.index(disliked)


def test_preferences_show_what_was_learned_and_reset_it(world):
    _, more, _ = vote_links(world.msg)[0]
    world.client.post(more)
    prefs = "/" + re.search(r"https://\S+/preferences/\S+", text_part(world.msg)).group(0).split("/", 3)[3]
    page = world.client.get(prefs)
    assert "What your digest has learned" in page.text and "(more)" in page.text
    reset = world.client.post(prefs + "/reset-profile")
    assert reset.status_code == 200 and "forgotten" in reset.text
    with configured_session() as session:
        assert session.get(Subscriber, world.sub_id).profile == {}


def test_votes_pressed_at_once_all_reach_the_profile(configure, db_url, smtp_server, tmp_path):
    """The ten "more like this" links of one digest pressed at the same moment, on a real
    server: ten votes were recorded and all ten answered "recorded", but each request read the
    profile before the others had written theirs and wrote back its own vote alone, so the
    profile said `votes: 1` and the ranking learned one paper of ten. (SQLite and PostgreSQL.)"""
    settings, _, sub_id, msg = sent_digest(configure, db_url, smtp_server, papers=10)
    mores = [more for _, more, _ in vote_links(msg)]
    assert len(mores) == 10
    web = WebServer(process_env(NEWSLETTER_DATABASE_URL=db_url), tmp_path / "web.log")
    try:
        answers = posted_at_once(web.url, mores, headers={"accept": "application/json"})
    finally:
        web.stop()
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"status": "recorded"})] * 10
    assert len(votes()) == 10
    with configured_session() as session:
        profile = session.get(Subscriber, sub_id).profile
    assert profile["votes"] == 10
    assert len(profile["liked"]) == PROFILE_MAX_TITLES  # the most recent ones, of ten
