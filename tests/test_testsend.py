"""`newsletter send --test`: the real digest, through a real SMTP server, DKIM-signed, no ledger."""

from __future__ import annotations

import json
import re
from html import unescape

import dkim
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from newsletter import admin, links
from newsletter.cli import app
from newsletter.config import get_settings
from newsletter.db import session_scope
from newsletter.models import Delivery, Issue, Paper, Subscriber
from newsletter.papers import sample_feed_path
from newsletter.testing import dkim_test_key
from tests.conftest import html_part, text_part

runner = CliRunner()


def test_a_test_send_is_the_readers_digest_signed_and_unrecorded(configure, pg_url, smtp_server, tmp_path):
    box, port = smtp_server
    record = dkim_test_key(tmp_path / "dkim.pem")
    settings = configure(
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_DKIM_SELECTOR="s1",
        NEWSLETTER_DKIM_PRIVATE_KEY_PATH=str(tmp_path / "dkim.pem"),
    )
    admin.ingest(settings, path=sample_feed_path())
    admin.add_subscriber(
        settings, "ada@example.org", "medical image segmentation", "weekly", 4, confirmed=True
    )

    result = runner.invoke(
        app, ["send", "--test", "Editor@Example.org", "--subscriber", "ada@example.org", "--json"]
    )
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["papers"] == 4 and sent["to"] == "Editor@example.org"

    [msg] = box.wait_for(1, to="Editor@example.org")
    assert str(msg["Subject"]).startswith("[Test] ") and msg["Message-ID"] == sent["message_id"]
    assert msg["To"] == "Editor@example.org" and msg["Date"] and msg["List-Unsubscribe-Post"]
    assert "segment" in text_part(msg).lower() and "<html" in html_part(msg)
    dns = lambda name, **_: record if name == b"s1._domainkey.news.example.org." else None  # noqa: E731
    [(_, _, raw)] = box.messages  # the bytes as they arrived: DKIM covers them, not a re-serialised copy
    assert raw.startswith(b"DKIM-Signature:") and dkim.verify(raw, dnsfunc=dns)
    with session_scope(get_settings().database_url) as session:
        reader = session.exec(select(Subscriber)).one()
        assert session.exec(select(func.count()).select_from(Delivery)).one() == 0
        assert session.exec(select(func.count()).select_from(Issue)).one() == 0
    # Whoever gets the test cannot unsubscribe the reader it was built for.
    assert links.unsubscribe_url(settings, reader) not in msg["List-Unsubscribe"]
    assert reader.token_key not in msg.as_string()

    by_interests = runner.invoke(app, ["send", "--test", "editor@example.org", "--interests", "robots"])
    assert by_interests.exit_code == 0, by_interests.output
    [robots] = box.wait_for(1, to="editor@example.org")
    assert robots["Subject"].startswith("[Test] ") and "robot" in text_part(robots).lower()


def test_test_send_mistakes_are_one_line(configure, sqlite_url, smtp_server):
    box, port = smtp_server
    configure(
        NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port)
    )
    for args, words in [
        (["send", "--test", "editor@example.org", "--interests", "x"], "no papers"),
        (["send", "--test", "not-an-address"], "not valid"),
        (["send", "--test", "a@example.org", "--subscriber", "nobody@example.org"], "no subscriber"),
        (
            ["send", "--test", "a@example.org", "--subscriber", "x@example.org", "--interests", "y"],
            "not both",
        ),
        (["send", "--now", "--interests", "robots"], "go with --test"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output, args
    box.replies["refused@example.org"] = "550 no such user"
    admin.ingest(get_settings(), path=sample_feed_path())
    refused = runner.invoke(app, ["send", "--test", "refused@example.org"])
    assert refused.exit_code == 1 and "did not take the test message" in refused.output
    assert box.messages == []


def test_a_test_send_takes_no_flag_of_the_periods_send(configure, sqlite_url):
    """`send --test ADDRESS --dry-run` sent the test all the same, and --frequency bogus was
    ignored: a flag of the period's send is refused with --test, and nothing is sent."""
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)  # the outbox sender
    admin.ingest(settings, path=sample_feed_path())
    for flags, named in [
        (["--dry-run"], "--dry-run"),
        (["--frequency", "bogus"], "--frequency"),
        (["--no-wait"], "--no-wait"),
        (["--now", "--frequency", "daily"], "--now, --frequency"),
    ]:
        result = runner.invoke(app, ["send", "--test", "me@example.org", *flags])
        assert result.exit_code == 1 and result.stdout == "", (flags, result.output)
        assert result.stderr.count("\n") == 1 and f"it takes no {named}" in result.stderr, result.stderr
    assert list(settings.outbox_dir.glob("*.eml")) == []
    assert runner.invoke(app, ["send", "--test", "me@example.org", "--json"]).exit_code == 0
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1


def test_preview_and_test_send_show_the_next_digest_not_papers_already_sent(configure, pg_url, smtp_server):
    """The digest never sends a paper twice, but preview and `send --test --subscriber` ranked
    every paper: they showed the reader's last digest again, not the one they would get."""
    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(port)
    )
    admin.ingest(settings, path=sample_feed_path())
    admin.add_subscriber(settings, "ada@example.org", "robot learning", "weekly", 5, confirmed=True)
    shown = admin.preview(settings, interests=None, email="ada@example.org")["items"]
    before = [i["paper_id"] for i in shown]
    assert admin.send_now(settings, "weekly")["counts"]["sent"] == 1
    [digest] = box.wait_for(1, to="ada@example.org")
    in_email = re.findall(
        r'<p class="paper-title"[^>]*><a href="[^"]+"[^>]*>(.*?)</a></p>', html_part(digest)
    )
    assert [unescape(t) for t in in_email] == [i["title"] for i in shown]  # in the email's order
    assert any(i["for_you"] for i in shown)
    with session_scope(get_settings().database_url) as session:
        [delivery] = session.exec(select(Delivery)).all()
        sent_titles = {session.get(Paper, p).title for p in delivery.paper_ids}
    assert sorted(delivery.paper_ids) == sorted(before)  # the preview was that digest

    after = admin.preview(settings, interests=None, email="ada@example.org")["items"]
    assert len(after) == 5 and not {i["paper_id"] for i in after} & set(delivery.paper_ids)
    result = runner.invoke(app, ["send", "--test", "editor@example.org", "--subscriber", "ada@example.org"])
    assert result.exit_code == 0, result.output
    [test] = box.wait_for(1, to="editor@example.org")
    assert not any(title in html_part(test) for title in sent_titles)
