"""Issues, ranking into digests, rendering and the delivery ledger (in-process, both stores)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select

from newsletter import admin
from newsletter.config import get_settings
from newsletter.db import get_engine
from newsletter.delivery import dispatch_issue, send_batch
from newsletter.digests import DigestItem, full_context, reader_links, renderer_for
from newsletter.ledger import delivery_counts, plan_issue
from newsletter.mail.render import render_email
from newsletter.models import (
    Delivery,
    Frequency,
    Issue,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.papers import PaperRecord, ingest_records, sample_feed_path
from newsletter.testing import configured_session
from tests.conftest import html_part, text_part
from tests.test_mail import spam_score

READERS = {
    "llm@example.org": "large language models and agents using tools",
    "med@example.org": "medical image segmentation",
    "robot@example.org": "robot learning and reinforcement learning for control",
}


def add_subscriber(
    address, interests="", status=SubscriberStatus.confirmed, frequency=Frequency.weekly, max_papers=5
) -> int:
    with configured_session() as session:
        sub = Subscriber(
            email=address,
            email_key=address.casefold(),
            interests=interests,
            status=status,
            frequency=frequency,
            max_papers=max_papers,
        )
        session.add(sub)
        session.flush()
        return sub.id


def ingest_sample() -> None:
    settings = get_settings()
    admin.ingest(settings, path=sample_feed_path())


@pytest.fixture
def world(configure, db_url, smtp_server):
    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=db_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_BATCH_SIZE="2",
    )
    ingest_sample()
    ids = {a: add_subscriber(a, i) for a, i in READERS.items()}
    add_subscriber("pending@example.org", "x", status=SubscriberStatus.pending)
    add_subscriber("gone@example.org", "x", status=SubscriberStatus.unsubscribed)
    return type("World", (), {"settings": settings, "box": box, "ids": ids})


def send_now():
    return admin.send_now(get_settings(), "weekly")


def digests(box, to=None):
    return [m for m in box.parsed(to) if "List-Id" in m]


def titles_in_text(msg) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", text_part(msg), flags=re.M)


def test_each_confirmed_reader_gets_one_digest_led_by_their_interests(world):
    result = send_now()
    assert result["counts"]["sent"] == 3
    for address, topic in [
        ("llm@example.org", "language model"),
        ("med@example.org", "segmentation"),
        ("robot@example.org", "reinforcement learning"),
    ]:
        [msg] = digests(world.box, address)
        top = titles_in_text(msg)[:2]
        assert any(topic in t.lower() for t in top), (address, top)
        assert len(titles_in_text(msg)) == 5  # their max_papers
    assert digests(world.box, "pending@example.org") == []
    assert digests(world.box, "gone@example.org") == []


def test_second_send_in_the_same_period_sends_nothing(world):
    send_now()
    again = send_now()
    assert again["planned"] == 0 and again["counts"]["sent"] == 3
    assert len(digests(world.box)) == 3
    with configured_session() as session:
        assert len(session.exec(select(Issue)).all()) == 1


def test_unsubscribed_after_planning_gets_nothing(world):
    with configured_session() as session:
        issue, planned = plan_issue(session, Frequency.weekly)
    assert planned == 3
    with configured_session() as session:
        sub = session.get(Subscriber, world.ids["med@example.org"])
        sub.status = SubscriberStatus.unsubscribed
    dispatch_issue(world.settings, issue.id)
    assert digests(world.box, "med@example.org") == []
    counts = delivery_counts(get_engine(world.settings.database_url), issue.id)
    assert counts["sent"] == 2 and counts["skipped"] == 1


def test_a_paper_is_never_sent_to_the_same_reader_twice(world):
    now = utcnow()
    with configured_session() as session:
        first, _ = plan_issue(session, Frequency.weekly, now)
    dispatch_issue(world.settings, first.id)
    with configured_session() as session:
        second, _ = plan_issue(session, Frequency.weekly, now + timedelta(days=7))
    dispatch_issue(world.settings, second.id)
    for address in READERS:
        a, b = digests(world.box, address)
        assert not set(titles_in_text(a)) & set(titles_in_text(b))


def test_digest_headers_links_and_spam_score(world):
    send_now()
    [msg] = digests(world.box, "llm@example.org")
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
    assert msg["List-Id"] and msg["Message-ID"] and msg["Date"]
    html = html_part(msg)
    assert "<style" not in html.split("</head>")[0].split("@media")[0] or 'style="' in html
    assert 'style="' in html and "<script" not in html
    for link in re.findall(r'href="([^"]+)"', html):
        assert link.startswith("https://"), link
    raw = world.box.messages[-1][2]
    assert spam_score(raw) <= 1.0


def test_text_and_html_list_the_same_papers_in_the_same_order(world):
    send_now()
    for address in READERS:
        [msg] = digests(world.box, address)
        html_titles = re.findall(
            r'<p class="paper-title"[^>]*>(?:<a [^>]*>)?(.*?)(?:</a>)?</p>', html_part(msg)
        )
        import html as html_lib

        assert [html_lib.unescape(t) for t in html_titles] == titles_in_text(msg)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_assembled_digest_equals_a_plain_render_and_inline(world, reader):
    """Every shape of digest: all papers matched, some (with "For you" and "Also trending"
    headings), none."""
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
    renderer = renderer_for(world.settings, issue.id)
    with configured_session() as session:
        sub = session.get(Subscriber, world.ids[reader])
    items = renderer.items(sub, renderer.rank(sub))
    fast = renderer.render(sub, items)
    context = full_context(world.settings, issue, sub, items, reader_links(world.settings, sub, issue.id))
    slow = render_email(world.settings, "digest", context)

    def untimed(text: str) -> str:
        # Signed links carry the second they were made in; the two renders may straddle one.
        return re.sub(r"(https://news\.example\.org/[\w/]+/)[\w-]+\.[\w-]+\.[\w-]+", r"\1TOKEN", text)

    def norm(html: str) -> str:
        return re.sub(r"\s+", " ", untimed(html)).replace("> <", "><").strip()

    assert norm(fast.html) == norm(slow.html)
    assert untimed(fast.text) == untimed(slow.text) and fast.subject == slow.subject


def untimed_links(text: str) -> str:
    # Signed links carry the second they were made in; the two renders may straddle one.
    return re.sub(r"(https://news\.example\.org/[\w/]+/)[\w-]+\.[\w-]+\.[\w-]+", r"\1TOKEN", text)


def test_assembled_text_equals_the_jinja_render_with_and_without_for_you(world):
    """The plain text is assembled from one render per issue; each reader's equals a render of
    the text template for them: with "For you"/"Also trending" headings and without any."""
    add_subscriber("anyone@example.org", "")  # told us nothing: no headings at all
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        subs = [session.get(Subscriber, i) for i in world.ids.values()]
        subs.append(session.exec(select(Subscriber).where(Subscriber.email == "anyone@example.org")).one())
    renderer = renderer_for(world.settings, issue.id)
    shapes = set()
    for sub in subs:
        items = renderer.items(sub, renderer.rank(sub))
        links_ = reader_links(world.settings, sub, issue.id)
        plain = render_email(
            world.settings, "digest", full_context(world.settings, issue, sub, items, links_), inline=False
        )
        fast = renderer.render(sub, items).text
        assert untimed_links(fast) == untimed_links(plain.text)
        shapes.add("\nFOR YOU\n" in fast)
    assert shapes == {True, False}  # readers with and without a "For you" section


def test_paper_text_from_outside_is_escaped(world):
    with configured_session() as session:
        ingest_records(
            session,
            [
                PaperRecord(
                    title="<script>alert('x')</script> Large language model agents",
                    abstract="<img src=x onerror=alert(1)> agents with tools",
                    source="test",
                    upvotes=999,
                )
            ],
        )
    send_now()
    [msg] = digests(world.box, "llm@example.org")
    html = html_part(msg)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert" in html
    assert "<script>alert('x')</script> Large language model agents" in text_part(msg)


def test_permanent_failure_bounces_transient_failure_retries(world):
    world.box.replies["med@example.org"] = "550 5.1.1 no such user"
    world.box.replies["robot@example.org"] = "451 4.3.0 try again later"
    first = send_now()
    assert first["counts"]["sent"] == 1 and first["counts"]["failed"] == 1
    assert first["counts"]["deferred"] == 1
    with configured_session() as session:
        assert session.get(Subscriber, world.ids["med@example.org"]).status is SubscriberStatus.bounced
    del world.box.replies["robot@example.org"]
    second = send_now()  # the deferred row goes out; the bounced one is not retried
    assert second["counts"]["sent"] == 2 and second["counts"]["failed"] == 1
    assert len(digests(world.box, "robot@example.org")) == 1


def test_a_batch_run_twice_sends_once(world):
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        ids = list(session.exec(select(Delivery.id).where(Delivery.issue_id == issue.id)))
    first = send_batch(world.settings, issue.id, ids)
    second = send_batch(world.settings, issue.id, ids)
    assert first["sent"] == 3 and second["claimed"] == 0
    assert len(digests(world.box)) == 3


def test_daily_readers_get_the_daily_issue_only(world):
    add_subscriber("daily@example.org", "diffusion", frequency=Frequency.daily)
    send_now()
    assert digests(world.box, "daily@example.org") == []
    admin.send_now(get_settings(), "daily")
    assert len(digests(world.box, "daily@example.org")) == 1
    with configured_session() as session:
        periods = sorted(i.period for i in session.exec(select(Issue)))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", periods[0]) and "-W" in periods[1]


def test_preview_ranks_for_interests(world):
    result = admin.preview(world.settings, interests="medical image segmentation", email=None, limit=3)
    assert len(result["items"]) == 3
    assert "segment" in result["items"][0]["title"].lower()
    assert result["items"][0]["score"] >= result["items"][1]["score"] >= result["items"][2]["score"]


def test_issue_freezes_its_papers(world):
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        frozen = list(issue.paper_ids)
        assert len(frozen) == len(session.exec(select(Paper)).all())
    ingest_sample()
    with configured_session() as session:
        ingest_records(session, [PaperRecord(title="A brand new paper", source="test")])
    with configured_session() as session:
        again, planned = plan_issue(session, Frequency.weekly)
    assert again.id == issue.id and again.paper_ids == frozen and planned == 0


def test_rendering_is_not_per_recipient_premailer(world, monkeypatch):
    calls = []
    import newsletter.digests as digests_module

    real = digests_module.inline_css
    monkeypatch.setattr(digests_module, "inline_css", lambda html: calls.append(1) or real(html))
    digests_module._renderers.clear()
    send_now()
    assert len(calls) == 1  # once for the issue, not once per reader


def test_item_why_lines_name_matched_terms(world):
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        sub = session.get(Subscriber, world.ids["med@example.org"])
    renderer = renderer_for(world.settings, issue.id)
    items: list[DigestItem] = renderer.items(sub, renderer.rank(sub))
    assert "segmentation" in items[0].why.lower()


def test_a_reader_gets_only_real_matches_for_you_and_the_rest_as_trending(world):
    """ "medical image segmentation" matches one sample paper; the other four are trending and
    say no reason, and no card claims a match on the generic "image" alone."""
    send_now()
    [msg] = digests(world.box, "med@example.org")
    text, html = text_part(msg), html_part(msg)
    assert "1 paper this period matches your interests; 4 more are trending." in text
    for_you, _, also = text.partition("ALSO TRENDING THIS PERIOD")
    assert "FOR YOU" in for_you and also
    assert len(re.findall(r"^\d+\. ", for_you, flags=re.M)) == 1
    assert len(re.findall(r"^\d+\. ", also, flags=re.M)) == 4
    assert "Matches your interests" in for_you and "Matches your interests" not in also
    whys = re.findall(r'<p class="why"[^>]*>(.*?)</p>', html)
    assert (
        len(whys) == 5 and whys[0].startswith("Matches your interests: segmentation") and whys[1:] == [""] * 4
    )
    assert all(len(w) <= 80 for w in whys)
    assert re.findall(r"<h2[^>]*>(.*?)</h2>", html) == ["For you", "Also trending this period"]


def test_a_reader_whose_every_paper_matches_gets_no_headings(world):
    send_now()
    [msg] = digests(world.box, "robot@example.org")
    assert "<h2" not in html_part(msg) and "ALSO TRENDING" not in text_part(msg)
    assert "5 papers from this period, ranked for your interests." in text_part(msg)


def test_a_reader_nothing_matches_is_told_so_and_gets_the_trending_list(world):
    add_subscriber("odd@example.org", "quantum chromodynamics lattice gauge")
    send_now()
    [msg] = digests(world.box, "odd@example.org")
    assert "No paper this period matches your interests closely" in text_part(msg)
    assert re.findall(r"<h2[^>]*>(.*?)</h2>", html_part(msg)) == ["Trending this period"]
    assert "Matches your interests" not in text_part(msg)


def test_the_intro_counts_in_good_english_for_a_digest_of_one():
    """Digest size 1 is allowed: "1 papers from this period", "The 1 most popular papers"."""
    from newsletter.digests import intro_line

    def intro(interests: str, *for_you: bool) -> str:
        cards = [DigestItem(paper=None, why="", more_url="", less_url="", for_you=f) for f in for_you]  # type: ignore[arg-type]
        return intro_line(
            Subscriber(email="a@example.org", email_key="a@example.org", interests=interests), cards
        )

    assert intro("robots", True) == "1 paper from this period, ranked for your interests."
    assert intro("", False).startswith("The most popular paper of this period.")
    assert intro("", False, False).startswith("The 2 most popular papers of this period.")
    assert (
        intro("robots", False) == "No paper this period matches your interests closely; here is 1 trending."
    )
    assert (
        intro("robots", True, True, False) == "2 papers this period match your interests; 1 more is trending."
    )
    assert (
        intro("robots", True, False, False)
        == "1 paper this period matches your interests; 2 more are trending."
    )


def test_every_card_title_is_a_link_and_no_id_is_invented(world):
    """The sample feed has titles and abstracts only: titles link to an arXiv title search. A
    paper with an arXiv id links to its page."""
    with configured_session() as session:
        record = PaperRecord(
            title="Sparse probing of robot learning", abstract="robot learning", arxiv_id="2511.00042"
        )
        ingest_records(session, [record])
    send_now()
    [msg] = digests(world.box, "robot@example.org")
    titles = re.findall(r'<p class="paper-title"[^>]*><a href="([^"]+)"[^>]*>(.*?)</a></p>', html_part(msg))
    assert len(titles) == 5
    for href, title in titles:
        if title == "Sparse probing of robot learning":
            assert href == "https://huggingface.co/papers/2511.00042"
        else:
            assert href.startswith("https://arxiv.org/search/?searchtype=title&amp;query=")
            assert "arxiv.org/abs" not in html_part(msg).split(title)[0].rsplit("<td", 1)[-1]


def test_cards_show_the_tldr_organisation_and_code_stars(world):
    with configured_session() as session:
        records = [
            PaperRecord(
                title="Robot learning with tiny transformers",
                abstract="We study robot learning and reinforcement learning for control. " * 20,
                arxiv_id="2511.00077",
                code_url="https://github.com/example/tiny",
                summary="Tiny transformers learn robot control from 10 demonstrations.",
                organization="Example Robotics Lab",
                github_stars=1234,
                comments=3,
            )
        ]
        ingest_records(session, records)
    send_now()
    [msg] = digests(world.box, "robot@example.org")
    html, text = html_part(msg), text_part(msg)
    card = html.split("Robot learning with tiny transformers")[1].split('class="votes"')[0]
    assert "Tiny transformers learn robot control from 10 demonstrations." in card
    assert "Example Robotics Lab" in card
    assert re.search(r">Code</a> ★(&nbsp;|\xa0)1,234", card)
    assert card.index("Tiny transformers learn") < card.index("We study robot learning")
    assert "Code (★ 1,234): https://github.com/example/tiny" in text
    assert "   Tiny transformers learn robot control from 10 demonstrations." in text


def test_the_text_part_never_cuts_a_link_in_an_abstract(world):
    """Jinja's wordwrap broke long words and at hyphens: the text part showed
    "https://github.com/example-org/self-supervised-graph-transformer-" and "benchmarks …" on the
    next line, so mail clients linked a wrong URL."""
    url = "https://github.com/example-org/self-supervised-graph-transformer-benchmarks"
    with configured_session() as session:
        record = PaperRecord(
            title="Robot learning with graph transformers",
            abstract=f"Robot learning and reinforcement learning for control, code at {url} today. " * 3,
        )
        ingest_records(session, [record])
    send_now()
    [msg] = digests(world.box, "robot@example.org")
    text = text_part(msg)
    card = text.split("Robot learning with graph transformers", 1)[1].split("More like this", 1)[0]
    assert url in card and "transformer-\n" not in card, card


def test_a_collaboration_cut_at_the_ingest_is_not_counted_short():
    """A 2,932-author paper is kept with its first MAX_AUTHORS names; its card said "and 494
    more"."""
    from newsletter.cards import paper_view
    from newsletter.models import Paper
    from newsletter.papers.base import MAX_AUTHORS

    def line(count: int) -> str:
        record = PaperRecord(title="Observation", authors=[f"Author {i}" for i in range(count)])
        return paper_view(
            Paper(id=1, title_key="observation", title=record.title, authors=record.authors)
        ).authors_line

    assert line(2932).endswith(f"Author 5 and {MAX_AUTHORS - 6}+ more")
    assert line(8).endswith("Author 5 and 2 more") and line(6).endswith("Author 4, Author 5")
