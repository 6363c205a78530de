"""The `newsletter` command as an operator uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from newsletter import admin
from newsletter.cli import app
from newsletter.config import get_settings, reset_settings
from newsletter.models import MAX_ROW_ID
from newsletter.papers import sample_feed_path
from newsletter.testing import create_pg_database, drop_pg_database
from tests.conftest import ROOT, cli_with, migrated_sqlite, process_env

runner = CliRunner()


@pytest.fixture
def cli(configure, sqlite_url):
    return cli_with(configure, sqlite_url)


def test_subscribers_add_list_export_remove(cli):
    cli("subscribers", "add", "ada@example.org", "--interests", "robots", "--confirmed")
    outbox = get_settings().outbox_dir
    assert not list(outbox.glob("*.eml"))  # an import sends no confirmation
    cli("subscribers", "add", "bob@example.org")  # double opt-in: stays pending
    assert len(list(outbox.glob("*.eml"))) == 1
    rows = json.loads(cli("subscribers", "list", "--json").stdout)
    assert {(r["email"], r["status"]) for r in rows} == {
        ("ada@example.org", "confirmed"),
        ("bob@example.org", "pending"),
    }
    long = "aaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbb@example-university.org"
    cli("subscribers", "add", long, "--interests", "robots and [bold]markup[/]", "--confirmed")
    listed = cli("subscribers", "list").stdout.splitlines()  # 80 columns, as when piped to grep
    assert any(line.startswith(long) and "[bold]markup[/]" in line for line in listed), listed
    assert [line for line in listed if "bob@example.org" in line][0].startswith("bob@example.org pending")
    cli("subscribers", "remove", long, "--erase")
    confirmed = json.loads(cli("subscribers", "list", "--json", "--status", "confirmed").stdout)
    assert [r["email"] for r in confirmed] == ["ada@example.org"]
    data = json.loads(cli("subscribers", "export", "ada@example.org").stdout)
    assert data["interests"] == "robots" and data["consent_events"][-1]["event"] == "imported"
    cli("subscribers", "remove", "ada@example.org")
    rows = json.loads(cli("subscribers", "list", "--json").stdout)
    assert {r["email"]: r["status"] for r in rows}["ada@example.org"] == "unsubscribed"
    cli("subscribers", "remove", "bob@example.org", "--erase")
    assert [r["email"] for r in json.loads(cli("subscribers", "list", "--json").stdout)] == [
        "ada@example.org"
    ]


def test_user_mistakes_get_a_message_not_a_traceback(cli, tmp_path):
    for args, words in [
        (("subscribers", "add", "not-an-address"), "not valid"),
        (("subscribers", "remove", "nobody@example.org"), "no subscriber"),
        (("subscribers", "list", "--status", "happy"), "unknown status"),
        (("papers", "ingest", str(tmp_path / "missing.json")), "no such file"),
        (("issues", "show", "99"), "no issue"),
        (("send",), "--now"),
        (("send", "--now", "--frequency", "hourly"), "weekly or daily"),
    ]:
        result = cli(*args, ok=False)
        assert result.exit_code != 0
        assert words in result.output and "Traceback" not in result.output, result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = cli("papers", "ingest", str(bad), ok=False)
    assert result.exit_code == 1 and "bad.json" in result.output


def one_line_error(*args: str) -> str:
    """Run a command that must fail with one line on stderr (no traceback); return that line."""
    result = runner.invoke(app, list(args))
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught error
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request, tmp_path):
    """A database that exists but never had `newsletter db upgrade`."""
    if request.param == "sqlite":
        (tmp_path / "empty.db").touch()  # an empty file is an empty SQLite database
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def test_a_database_without_its_schema_says_to_upgrade(configure, unmigrated_url):
    configure(NEWSLETTER_DATABASE_URL=unmigrated_url)
    for args in (("issues", "list"), ("stats", "--json"), ("subscribers", "list")):
        assert "run `newsletter db upgrade`" in one_line_error(*args), args


def test_a_mistyped_sqlite_path_is_named_and_left_alone(configure, tmp_path):
    """A command pointed at a SQLite path holding no database made the folder and an empty file
    there, then said "run `newsletter db upgrade`", which would have set up a second, empty list
    at the typo; now it names the path and writes nothing. `db upgrade` still creates it."""
    missing = tmp_path / "typo" / "newsleter.db"
    configure(NEWSLETTER_DATABASE_URL=f"sqlite:///{missing}")
    for args in (("stats",), ("issues", "list"), ("subscribers", "list", "--json"), ("check",)):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 1, (args, result.output)
        if args != ("check",):
            assert result.stderr == (
                f"Error: cannot reach the database: no SQLite database at {missing} "
                "(check NEWSLETTER_DATABASE_URL; `newsletter db upgrade` creates it)\n"
            ), args
        assert not missing.parent.exists(), args
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0 and missing.exists()
    assert "Subscribers" in runner.invoke(app, ["stats"]).stdout


def test_db_upgrade_says_up_to_date_only_when_the_schema_is_the_codes(configure, tmp_path):
    """A store stamped past revisions it never ran (main on 30 Nov 2026, see migration 0013) was
    "up to date" with subscriber.weekday missing, and every other command then failed. Now the
    upgrade compares the schema with the models; an operator's own extra table does not count."""
    import sqlite3

    path = tmp_path / "list.db"
    configure(NEWSLETTER_DATABASE_URL=f"sqlite:///{path}")
    assert "is up to date" in runner.invoke(app, ["db", "upgrade"]).stdout
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE our_own_notes (id INTEGER PRIMARY KEY)")
    assert "is up to date" in runner.invoke(app, ["db", "upgrade"]).stdout
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE subscriber DROP COLUMN weekday")
    said = one_line_error("db", "upgrade")
    assert "at the last migration but its schema differs" in said and "add_column subscriber.weekday" in said


def test_an_unreachable_database_is_one_line(configure):
    configure(NEWSLETTER_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    for args in (("stats",), ("issues", "list", "--json"), ("subscribers", "add", "ada@example.org")):
        assert "cannot reach the database" in one_line_error(*args), args


def test_commands_use_the_settings_they_are_given(configure, sqlite_url, tmp_path):
    configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    other = get_settings().model_copy(update={"database_url": migrated_sqlite(tmp_path / "other")})
    admin.add_subscriber(other, "ada@example.org", "robots", "weekly", 5, confirmed=True)
    assert [s.email for s in admin.list_subscribers(other)] == ["ada@example.org"]
    assert admin.list_subscribers(get_settings()) == []
    assert admin.stats(other)["subscribers"]["confirmed"] == 1


def test_ingest_preview_send_and_issues(cli):
    report = json.loads(cli("papers", "ingest", str(sample_feed_path()), "--json").stdout)
    assert report["added"] == 75 and report["errors"] == []
    again = json.loads(cli("papers", "ingest", str(sample_feed_path()), "--json").stdout)
    assert again["added"] == 0 and again["unchanged"] == 75
    items = json.loads(cli("preview", "--interests", "medical image segmentation", "--json").stdout)
    assert len(items) == 10 and "segment" in items[0]["title"].lower()
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    cli("subscribers", "add", "ada@example.org", "--interests", "robots", "--confirmed")
    items = json.loads(cli("preview", "--subscriber", "ada@example.org", "--json").stdout)
    assert items and all({"title", "score", "why"} <= set(i) for i in items)
    dry = json.loads(cli("send", "--now", "--dry-run", "--json").stdout)
    assert dry["due"] == 1
    first = json.loads(cli("send", "--now", "--json").stdout)
    assert first["counts"]["sent"] == 1 and first["planned"] == 1
    second = json.loads(cli("send", "--now", "--json").stdout)
    assert second["planned"] == 0 and second["counts"]["sent"] == 1
    issues = json.loads(cli("issues", "list", "--json").stdout)
    assert len(issues) == 1 and issues[0]["counts"]["sent"] == 1
    shown = json.loads(cli("issues", "show", str(issues[0]["id"]), "--json").stdout)
    assert len(shown["paper_titles"]) == 75
    assert "Issue" in cli("issues", "list").stdout or "period" in cli("issues", "list").stdout
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["subscribers"]["confirmed"] == 1


def test_send_before_any_ingest_is_refused_and_makes_no_empty_issue(cli):
    """`send --now` on a new list made this period's issue with no paper, frozen empty for the
    whole period: after the ingest a second `send --now` planned nothing and the reader got no
    digest that week. Now it is one line, exit 1, and nothing is written."""
    cli("subscribers", "add", "ada@example.org", "--interests", "robots", "--confirmed")
    dry = cli("send", "--now", "--dry-run").stdout
    assert "0 candidate papers" in " ".join(dry.split()) and "papers ingest" in dry
    refused = cli("send", "--now", ok=False)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.startswith("Error: no papers for ") and "newsletter papers ingest" in refused.stderr
    assert json.loads(cli("issues", "list", "--json").stdout) == []
    cli("papers", "ingest")
    sent = json.loads(cli("send", "--now", "--json").stdout)
    assert sent["planned"] == 1 and sent["counts"]["sent"] == 1


def test_what_readers_and_feeds_write_is_printed_as_text_never_as_markup(cli, tmp_path):
    """Interests typed on the signup page and paper titles from a feed went to rich as markup:
    "[/]" made `subscribers list`, `preview` and `issues show` end in a MarkupError traceback,
    and "[bold]" vanished."""
    feed = tmp_path / "feed.json"
    titles = ["Rank [/] [b] robots", "Robots [/] again"]
    feed.write_text(
        json.dumps(
            [
                {"title": titles[0], "abstract": "robots", "arxiv_id": "2511.00001"},
                {"title": titles[1], "abstract": "robots", "arxiv_id": "2511.00002"},
                {"title": titles[1], "abstract": "robots", "arxiv_id": "2511.00003"},  # refused: shown
            ]
        )
    )
    ingested = cli("papers", "ingest", str(feed))
    assert "'Robots [/] again'" in ingested.stderr
    cli("subscribers", "add", "ada@example.org", "--interests", "[/] [b]", "--confirmed")
    assert "[/] [b]" in cli("subscribers", "list").stdout
    assert titles[0] in cli("preview", "--interests", "robots").stdout
    cli("send", "--now")
    assert titles[0] in cli("issues", "show", "1").stdout


def test_preview_writes_html(cli, tmp_path):
    cli("papers", "ingest", str(sample_feed_path()))
    out = tmp_path / "preview.html"
    cli("preview", "--interests", "robots", "--html", str(out))
    assert "<html" in out.read_text() and 'style="' in out.read_text()


def test_help_has_examples():
    result = runner.invoke(app, ["papers", "ingest", "--help"])
    assert result.exit_code == 0 and "--source huggingface" in result.output


def test_installed_command_refuses_default_secret_in_production(tmp_path):
    env = process_env()
    env.pop("NEWSLETTER_SECRET_KEY")
    env["NEWSLETTER_MODE"] = "production"
    env["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "serve", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "NEWSLETTER_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr


def run_demo(folder, **environment: str) -> tuple[subprocess.CompletedProcess, int]:
    """`newsletter demo` in `folder` with only `environment` of ours; its answer and how many
    digests landed in its outbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(PYTHONPATH=str(ROOT), **environment)
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "demo"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
    )
    outbox = folder / "var" / "demo" / "outbox"
    return result, len([p for p in outbox.glob("*.eml") if b"List-Id:" in p.read_bytes()])


def test_demo_runs_the_whole_journey_offline(tmp_path):
    result, digests = run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 demo readers signed up and confirmed" in result.stdout
    assert "4 digests sent" in result.stdout
    assert digests == 4


def test_demo_next_to_a_production_configuration_touches_none_of_it(tmp_path):
    """Run where an operator's .env and environment name a database, broker and relay, the demo
    uses its own SQLite file and outbox: none of those services is even reachable here."""
    unreachable = {
        "NEWSLETTER_MODE": "production",
        "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/production",
        "NEWSLETTER_BROKER_URL": "redis://127.0.0.1:1/0",
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": "1",
    }
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in unreachable.items()))
    result, digests = run_demo(tmp_path, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT="1")
    assert result.returncode == 0, result.stderr
    assert "4 digests sent" in result.stdout
    assert digests == 4


def test_an_erased_address_is_suppressed_against_imports_until_lifted(cli):
    """L10: erase left nothing behind, so `subscribers add --confirmed` (an import) brought an
    erased person back. Now erase keeps a hash of the address, and operator adds refuse it with
    a clear message; the person may still sign up themselves (double opt-in), and confirming
    lifts the suppression; so does `subscribers unsuppress`."""
    from sqlalchemy import create_engine, text
    from sqlmodel import SQLModel

    from newsletter import subscriptions as subs
    from newsletter.suppression import address_hash, suppression_for
    from newsletter.testing import configured_session
    from newsletter.tokens import Purpose, make_token

    cli("subscribers", "add", "Ada@Example.org", "--interests", "robots", "--confirmed")
    cli("subscribers", "remove", "ada@example.org", "--erase")
    engine = create_engine(get_settings().database_url)
    with engine.connect() as conn:  # nothing but the hash, a reason and a time is left
        stored = {
            t.name: conn.execute(text(f"SELECT * FROM {t.name}")).all()
            for t in SQLModel.metadata.sorted_tables
        }
    engine.dispose()
    assert "ada" not in repr(stored).lower()
    [(_, digest, reason, _, folded)] = stored["suppression"]
    assert digest == address_hash("ada@example.org") and reason == "erased by the operator" and not folded

    for args in (("--confirmed",), ()):
        error = one_line_error("subscribers", "add", "ADA@example.org", *args)
        assert "suppress" in error and "newsletter subscribers unsuppress ADA@example.org" in error
    assert json.loads(cli("subscribers", "list", "--json").stdout) == []

    with configured_session() as session:  # the person signs up again on the website
        assert subs.request_subscription(session, get_settings(), "ada@example.org", "robots") == "created"
    with configured_session() as session:
        ada = subs.find_by_email(session, "ada@example.org")
        token = make_token(get_settings(), Purpose.confirm, ada.token_key, ada.token_version)
        subs.confirm_subscription(session, get_settings(), token)
    with configured_session() as session:
        assert suppression_for(session, "ada@example.org") is None  # consent given again

    cli("subscribers", "remove", "ada@example.org", "--erase")
    assert "not on the suppression list" in one_line_error("subscribers", "unsuppress", "bob@example.org")
    assert "ada@example.org" in cli("subscribers", "unsuppress", "ada@example.org").stdout
    cli("subscribers", "add", "ada@example.org", "--confirmed")


def test_an_address_erased_before_keys_were_lower_case_stays_suppressed(cli, tmp_path):
    """Migration 0014 cannot rewrite a suppression: its hash is of the case-folded key
    (Straße@ erased as strasse@), and 0014 marks such rows `folded`. Adds and imports still
    find it, and unsuppress lifts it; a folded hash is looked for in those rows only, so
    strasse@ erased since is not lifted by Straße@'s confirmation."""
    from newsletter import subscriptions as subs
    from newsletter.models import Suppression
    from newsletter.suppression import address_hash, suppression_for
    from newsletter.testing import configured_session
    from newsletter.tokens import Purpose, make_token

    with configured_session() as session:
        legacy = address_hash("straße@example.org".casefold())
        session.add(Suppression(address_hash=legacy, reason="erased", folded=True))
    assert "suppression list" in one_line_error("subscribers", "add", "Straße@example.org", "--confirmed")
    held = tmp_path / "held.csv"
    held.write_text("email\nStraße@example.org\n")
    report = json.loads(cli("subscribers", "import", str(held), "--confirmed", "--json").stdout)
    assert report["created"] == 0 and json.loads(cli("subscribers", "list", "--json").stdout) == []
    held.write_text("email\nstrasse@example.org\nStraße@example.org\n")  # the twins together
    report = json.loads(cli("subscribers", "import", str(held), "--confirmed", "--json").stdout)
    assert report["created"] == 0 and len(report["skipped"]) == 2
    cli("subscribers", "unsuppress", "Straße@example.org")
    cli("subscribers", "add", "Straße@example.org", "--confirmed")
    cli("subscribers", "remove", "Straße@example.org", "--erase")  # erased now: under its own key
    assert "suppression list" in one_line_error("subscribers", "add", "STRAẞE@example.org")
    cli("subscribers", "add", "strasse@example.org", "--confirmed")  # another reader
    cli("subscribers", "remove", "strasse@example.org", "--erase")
    cli("subscribers", "unsuppress", "Straße@example.org")
    with configured_session() as session:  # Straße@ signs up and confirms: strasse@ stays erased
        subs.request_subscription(session, get_settings(), "Straße@example.org", "")
    with configured_session() as session:
        sub = subs.find_by_email(session, "Straße@example.org")
        subs.confirm_subscription(
            session,
            get_settings(),
            make_token(get_settings(), Purpose.confirm, sub.token_key, sub.token_version),
        )
    with configured_session() as session:
        assert suppression_for(session, "strasse@example.org") is not None


def test_erasing_a_reader_deletes_the_mail_the_outbox_holds_for_them_and_no_one_elses(cli):
    """L10: erase left the reader's emails (digests with their interests and links) in the
    outbox folder. Now they go once the erasure commits; a reader whose file names end the same
    ("a.b@…" and "a_b@…") keeps theirs, and an erasure that rolls back deletes nothing."""
    from email import message_from_bytes, policy

    from newsletter import privacy
    from newsletter.models import Subscriber
    from newsletter.testing import configured_session

    outbox = get_settings().outbox_dir

    def recipients() -> list[str]:
        return sorted(
            str(message_from_bytes(p.read_bytes(), policy=policy.default)["To"]) for p in outbox.glob("*.eml")
        )

    cli("papers", "ingest", str(sample_feed_path()))
    for address in ("A.B@example.org", "a_b@example.org", "ada@example.org"):
        cli("subscribers", "add", address, "--interests", "robots", "--confirmed")
    cli("subscribers", "add", "A.B@example.org")  # asks again: "already subscribed" goes out
    cli("send", "--now")
    before = recipients()
    assert before.count("A.B@example.org") == 2 and before.count("a_b@example.org") == 1

    with pytest.raises(RuntimeError), configured_session() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email_key == "a.b@example.org")).one()
        privacy.erase_subscriber(session, get_settings(), sub)
        raise RuntimeError("the erasure failed before its commit")
    assert recipients() == before

    cli("subscribers", "remove", "a.b@EXAMPLE.org", "--erase")
    assert recipients() == [r for r in before if r != "A.B@example.org"]

    # internationalised addresses: their To: is UTF-8, which the parser read as surrogates
    for address in ("Ünïcode.Straße@example.org", "idn@bücher.de"):
        cli("subscribers", "add", address, "--interests", "robots")  # the confirmation email
        assert address in recipients()
        cli("subscribers", "remove", address, "--erase")
        assert address not in recipients()


def test_preview_of_a_subscriber_shows_their_own_digest_size(cli):
    cli("papers", "ingest", str(sample_feed_path()))
    cli("subscribers", "add", "ada@example.org", "--interests", "robots", "--max-papers", "3", "--confirmed")
    items = json.loads(cli("preview", "--subscriber", "ada@example.org", "--json").stdout)
    assert len(items) == 3
    assert (
        len(json.loads(cli("preview", "--subscriber", "ada@example.org", "--json", "--limit", "5").stdout))
        == 5
    )
    default = get_settings().default_max_papers
    assert len(json.loads(cli("preview", "--interests", "robots", "--json").stdout)) == default


def test_db_upgrade_never_prints_the_password(configure):
    url = create_pg_database()
    try:
        with_password = url.replace("postgres@", "postgres:hunter2-secret@", 1)
        configure(NEWSLETTER_DATABASE_URL=with_password)  # trust auth: the password is not needed
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "hunter2-secret" not in result.output and "***" in result.output
    finally:
        drop_pg_database(url)


def usage_error(*args: str) -> str:
    """Run a command that click must refuse before it runs (exit 2, no traceback); its output."""
    result = runner.invoke(app, list(args))
    assert isinstance(result.exception, SystemExit), result.exception  # not an OverflowError
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return result.output


def test_numbers_past_what_the_database_or_a_socket_takes_are_usage_errors(cli):
    """An id past SQLite's 64 bits ended in `OverflowError: Python int too large to convert to
    SQLite INTEGER`, one past PostgreSQL's 32-bit INTEGER in a DataError, a port past 65535 in
    `OverflowError: bind(): port must be 0-65535`."""
    huge = "99999999999999999999999"
    for args in (
        ("issues", "show", huge),
        ("issues", "pause", huge),
        ("issues", "resume", huge),
        ("deliveries", "list", "--issue", huge),
        ("deliveries", "list", "--after", huge),
    ):
        assert str(MAX_ROW_ID) in usage_error(*args), args
    for args in (("serve", "--port", "99999"), ("inbound", "serve", "--port", "99999")):
        assert "65535" in usage_error(*args), args
    largest = str(MAX_ROW_ID)  # still an id: there is no such issue, and nothing after it
    assert "no issue with id" in one_line_error("issues", "show", largest)
    assert "No failed/deferred deliveries" in cli("deliveries", "list", "--after", largest).stdout


def test_a_database_url_that_is_not_one_is_a_bad_setting(configure, monkeypatch):
    """NEWSLETTER_DATABASE_URL=garbage ended in sqlalchemy's ArgumentError; now it is reported
    like every bad setting: one line naming it and why, without echoing the URL."""
    configure()
    for url in ("garbage", "postgresql//digest:hunter2@db/news", "nosuchdb://db/news"):
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
        reset_settings()
        for args in (("stats",), ("db", "upgrade")):
            line = one_line_error(*args)
            assert line.startswith("Error: NEWSLETTER_DATABASE_URL: ") and "hunter2" not in line, line


def test_a_feed_nested_too_deeply_is_a_malformed_feed(cli, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)  # before the fix: RecursionError
    assert f"{deep}: not a paper feed: its JSON is nested too deeply" in one_line_error(
        "papers", "ingest", str(deep)
    )


def test_a_password_that_is_not_utf8_is_one_line(tmp_path):
    """On a real stdin (surrogateescape) the bytes became surrogates and Argon2 raised
    UnicodeEncodeError; CliRunner's stdin refuses them as it reads (UnicodeDecodeError)."""
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "admin", "hash-password", "--stdin"],
        input=b"\xff\xfe" * 8 + b"\n",
        env=process_env(),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stdout == b"", result.stderr
    assert result.stderr.decode() == "Error: the password is not valid UTF-8 text\n"
    strict = runner.invoke(app, ["admin", "hash-password", "--stdin"], input=b"\xff\xfe\n\xff\xfe\n")
    assert strict.exit_code == 1 and "not valid UTF-8" in strict.stderr, strict.exception


def test_an_unsubscribed_or_bounced_reader_is_not_confirmed_again_without_resubscribe(cli):
    """`subscribers add X --confirmed` answered "X: confirmed" for a reader who had just
    unsubscribed (or hard-bounced), and mailed them again; a CSV import never does that."""
    from newsletter import subscriptions as subs
    from newsletter.testing import configured_session

    for address in ("left@example.org", "bounced@example.org"):
        cli("subscribers", "add", address, "--interests", "robots", "--confirmed")
    cli("subscribers", "remove", "left@example.org")
    with configured_session() as session:
        subs.mark_bounced(session, subs.find_by_email(session, "bounced@example.org"), "550 user unknown")
    for address, status in (("left@example.org", "unsubscribed"), ("bounced@example.org", "bounced")):
        error = one_line_error("subscribers", "add", address, "--confirmed")
        assert f"{address} {status} on " in error and "--resubscribe" in error
        assert {r["email"]: r["status"] for r in json.loads(cli("subscribers", "list", "--json").stdout)}[
            address
        ] == status
    assert "--resubscribe goes with --confirmed" in one_line_error(
        "subscribers", "add", "left@example.org", "--resubscribe"
    )
    assert "confirmed" in cli("subscribers", "add", "left@example.org", "--confirmed", "--resubscribe").stdout
    events = json.loads(cli("subscribers", "export", "left@example.org").stdout)["consent_events"]
    assert [e["event"] for e in events][-2:] == ["unsubscribed:operator", "imported"]


def test_signups_never_confirmed_are_forgotten_after_the_set_days(cli):
    """A signup nobody confirmed was kept forever: a stranger's signup of someone's address, with
    the stranger's interests, IP and browser, which the owner could only remove by subscribing
    and erasing. Forgotten after NEWSLETTER_FORGET_UNCONFIRMED_DAYS (14) since the last
    confirmation email; a reader who once confirmed, or was asked again lately, stays."""
    from datetime import timedelta

    from newsletter import subscriptions as subs
    from newsletter.models import ConsentEvent, JourneyEmail, Subscriber, utcnow
    from newsletter.suppression import suppression_for
    from newsletter.testing import configured_session

    outbox = get_settings().outbox_dir
    for address in ("stranger@example.org", "recent@example.org", "asked-again@example.org"):
        cli("subscribers", "add", address, "--interests", "a stranger's words")  # pending
    cli("subscribers", "add", "left@example.org", "--confirmed")
    cli("subscribers", "remove", "left@example.org")
    cli("subscribers", "add", "left@example.org")  # asks to come back: pending, confirmed before
    weeks_ago = utcnow() - timedelta(days=15)
    with configured_session() as session:
        for sub in session.exec(select(Subscriber).where(Subscriber.email != "recent@example.org")):
            sub.created_at = sub.confirm_sent_at = weeks_ago
            for row in session.exec(select(ConsentEvent).where(ConsentEvent.subscriber_id == sub.id)):
                row.at = weeks_ago
                session.add(row)
            if sub.email == "asked-again@example.org":  # two days ago; its email could not go out
                sub.confirm_sent_at = None  # (the cooldown's reset)
                session.add(
                    ConsentEvent(
                        subscriber_id=sub.id,
                        email_key=sub.email_key,
                        event="signup_requested",
                        at=utcnow() - timedelta(days=2),
                    )
                )
            session.add(sub)
    stranger_id = subscriber_id("stranger@example.org")
    assert any("stranger" in p.name for p in outbox.glob("*.eml"))

    assert "Forgot 1 signup not confirmed within 14 days." in cli("subscribers", "forget-unconfirmed").stdout
    listed = {r["email"]: r["status"] for r in json.loads(cli("subscribers", "list", "--json").stdout)}
    assert listed == {
        "recent@example.org": "pending",
        "asked-again@example.org": "pending",
        "left@example.org": "pending",
    }
    with configured_session() as session:
        for table in (ConsentEvent, JourneyEmail):
            assert not session.exec(select(table).where(table.subscriber_id == stranger_id)).all()
        assert suppression_for(session, "stranger@example.org") is None  # nothing left behind
    assert not any("stranger" in p.name for p in outbox.glob("*.eml"))
    with configured_session() as session:  # and the owner may sign up whenever they like
        assert subs.request_subscription(session, get_settings(), "stranger@example.org", "") == "created"
    assert "Forgot 0 signups" in cli("subscribers", "forget-unconfirmed").stdout


def subscriber_id(address: str) -> int:
    from newsletter.models import Subscriber
    from newsletter.testing import configured_session

    with configured_session() as session:
        return session.exec(select(Subscriber).where(Subscriber.email_key == address)).one().id


def test_a_signup_while_the_unconfirmed_are_forgotten_keeps_the_reader(cli, monkeypatch):
    """The job read a stale row, then deleted it; a signup committed in between (on SQLite,
    whose FOR UPDATE is no lock) was deleted with its fresh consent row and queued email."""
    from datetime import timedelta

    from newsletter import privacy
    from newsletter import subscriptions as subs
    from newsletter.models import ConsentEvent, Subscriber, utcnow
    from newsletter.testing import configured_session

    cli("subscribers", "add", "late@example.org")
    with configured_session() as session:
        sub = session.exec(select(Subscriber)).one()
        sub.created_at = sub.confirm_sent_at = utcnow() - timedelta(days=15)
        for row in session.exec(select(ConsentEvent)):
            row.at = sub.created_at
            session.add(row)
        session.add(sub)
    real, asked = privacy.rows_written, []

    def signup_first(session, statement):  # the owner signs up again just before the job's write
        if not asked:
            with configured_session() as other:
                sub = subs.find_by_email(other, "late@example.org")
                sub.confirm_sent_at = None  # past the cooldown: this signup asks again
                other.add(sub)
            with configured_session() as other:
                asked.append(subs.request_subscription(other, get_settings(), "late@example.org", "robots"))
        return real(session, statement)

    monkeypatch.setattr(privacy, "rows_written", signup_first)
    assert "Forgot 0 signups" in cli("subscribers", "forget-unconfirmed").stdout
    assert asked and json.loads(cli("subscribers", "list", "--json").stdout)[0]["email"] == "late@example.org"
