"""`newsletter db copy`: a list built on the embedded SQLite file moves to PostgreSQL (or another
file) whole, and the app carries on there; a copy that cannot be right writes nothing."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel, select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import get_settings
from newsletter.dbcopy import copy_database
from newsletter.migrate import upgrade
from newsletter.papers import sample_feed_path
from newsletter.testing import configured_session, create_pg_database, drop_pg_database
from tests.conftest import cli_with, migrated_pg, migrated_sqlite

runner = CliRunner()
TABLES = [t.name for t in SQLModel.metadata.sorted_tables]


def confirmed_signup(email: str, interests: str, likes: list[int] | None = None) -> None:
    """A reader signs up on the website and follows the link in the confirmation email."""
    from newsletter import subscriptions as subs
    from newsletter.tokens import Purpose, make_token

    settings = get_settings()
    with configured_session() as session:  # `likes`: the papers ticked on the signup page
        client = subs.Client("203.0.113.9", "Firefox")
        subs.request_subscription(session, settings, email, interests, client, likes=likes)
    with configured_session() as session:
        reader = subs.find_by_email(session, email)
        token = make_token(settings, Purpose.confirm, reader.token_key, reader.token_version)
        subs.confirm_subscription(session, settings, token)


def vote_and_bounce() -> None:
    """Ada likes the first paper of her digest; Bob's mailbox is full (a soft bounce)."""
    from newsletter import subscriptions as subs
    from newsletter.bounces.events import BounceEvent, record_bounce
    from newsletter.feedback import VoteRequest, record_vote
    from newsletter.models import Delivery

    settings = get_settings()
    with configured_session() as session:
        ada, bob = (subs.find_by_email(session, a) for a in ("ada@example.org", "bob@example.org"))
        delivery = session.exec(select(Delivery).where(Delivery.subscriber_id == ada.id)).one()
        vote = VoteRequest(ada.id, delivery.issue_id, delivery.paper_ids[0], 1, "")
        assert record_vote(session, settings, vote) == "recorded"
        bobs = session.exec(select(Delivery).where(Delivery.subscriber_id == bob.id)).one()
        event = BounceEvent(kind="soft", delivery_id=bobs.id, status="4.2.2", source="dsn")
        record_bounce(session, settings, event)


def embeddings_and_an_ended_session() -> None:
    """What the dense ranking and the admin pages store: float32 vectors (bytes), a logout."""
    from newsletter.models import EndedAdminSession, Paper, PaperEmbedding

    with configured_session() as session:
        for paper in session.exec(select(Paper).limit(3)):
            vector = struct.pack("<4f", 0.5, -0.5, 0.25, float(paper.id or 0))
            session.add(PaperEmbedding(paper_id=paper.id, model="tiny", vector=vector))
        session.add(EndedAdminSession(sid="s" * 32, expires_at=datetime.now(UTC) + timedelta(hours=8)))


@pytest.fixture
def store(configure, tmp_path) -> str:
    """A SQLite list as the product writes it: the sample feed, readers who signed up and
    confirmed, one added by the operator, a digest sent to the outbox, a vote, a soft bounce, a
    reader still pending, and the last reader erased (their id is the highest ever given)."""
    url = migrated_sqlite(tmp_path)
    cli = cli_with(configure, url)
    cli("papers", "ingest", str(sample_feed_path()))
    confirmed_signup("ada@example.org", "robot grasping", likes=[1, 2])
    confirmed_signup("bob@example.org", "protein design")
    cli("subscribers", "add", "cy@example.org", "--interests", "weather forecasting", "--confirmed")
    cli("subscribers", "add", "pending@example.org")
    cli("subscribers", "add", "erased@example.org", "--confirmed")
    assert json.loads(cli("send", "--now", "--json").stdout)["counts"]["sent"] == 4
    vote_and_bounce()
    embeddings_and_an_ended_session()
    cli("subscribers", "remove", "erased@example.org", "--erase")
    return url


def dump(url: str) -> dict[str, list[Any]]:
    """Every row of every app table as SQLAlchemy reads it (aware datetimes, JSON, enums, bytes),
    in id order, and which JSON columns hold SQL NULL rather than a JSON null."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = {
            t.name: conn.execute(t.select().order_by(t.c.id)).all() for t in SQLModel.metadata.sorted_tables
        }
        nulls = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM subscriber WHERE pending_likes IS NULL),"
                " (SELECT count(*) FROM issue WHERE papers_snapshot IS NULL)"
            )
        ).one()
    engine.dispose()
    return {**rows, "sql nulls": [tuple(nulls)]}


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    engine.dispose()
    return found


def copy_cli(*args: str):
    return runner.invoke(app, ["db", "copy", *args])


def test_a_sqlite_list_moves_to_postgresql_whole_and_carries_on_there(store, configure, pg_url):
    before = dump(store)
    assert all(before[t] for t in TABLES), {t: len(before[t]) for t in TABLES}  # every table has rows
    listed = json.loads(runner.invoke(app, ["subscribers", "list", "--json"]).stdout)
    outbox = get_settings().outbox_dir
    mailed = len(list(outbox.glob("*.eml")))

    result = copy_cli("--to", pg_url)
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "subscriber 4 rows" in said and "NEWSLETTER_DATABASE_URL" in said and "rows/s" in said

    after = dump(pg_url)
    for table in TABLES:  # every row, column by column: ids, aware times, JSON, enums, vectors
        assert after[table] == before[table], table
    assert after["sql nulls"] == before["sql nulls"]

    cli = cli_with(configure, pg_url)  # the app on the copy
    assert json.loads(cli("subscribers", "list", "--json").stdout) == listed
    again = json.loads(cli("send", "--now", "--json").stdout)
    sent = sum(1 for delivery in before["delivery"] if delivery.state == "sent")
    assert again["planned"] == 0 and again["counts"]["sent"] == sent
    assert len(list(outbox.glob("*.eml"))) == mailed  # nobody mailed twice
    confirmed_signup("dora@example.org", "robots")
    dora = [
        r for r in json.loads(cli("subscribers", "list", "--json").stdout) if r["email"] == "dora@example.org"
    ]
    erased_id = max(r["id"] for r in listed) + 1  # the erased reader was the last one added
    assert dora[0]["id"] == erased_id + 1  # after every id given out, the erased reader's too
    assert counts(pg_url)["consent_event"] > len(before["consent_event"])


def test_a_list_copies_back_from_postgresql_and_to_another_sqlite_file(store, pg_url, tmp_path):
    """PostgreSQL as the source too (a server-side cursor, its sequences' high-water marks), in
    batches of 7 rows so that every table takes several."""
    there = copy_database(store, pg_url, batch_rows=7)
    target = migrated_sqlite(tmp_path / "copy")
    back = copy_database(pg_url, target, batch_rows=7)
    assert there.rows == back.rows == counts(store) and back.total == sum(counts(store).values())
    assert dump(target) == dump(store)
    engine = create_engine(target)
    with engine.connect() as conn:
        last_ids = dict(conn.execute(text("SELECT name, seq FROM sqlite_sequence")).all())
    engine.dispose()
    erased = max(r.id for r in dump(store)["subscriber"]) + 1  # the last reader added, then erased
    assert last_ids["subscriber"] == erased  # the next reader's id is past theirs

    beside = migrated_sqlite(tmp_path / "beside")  # SQLite to SQLite: a new file for the same list
    assert copy_database(store, beside).rows == counts(store) and dump(beside) == dump(store)


def one_line_error(*args: str) -> str:
    result = copy_cli(*args)
    assert result.exit_code == 1 and result.stdout == "", result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_refusals_are_one_line_and_leave_the_target_untouched(store, pg_url, tmp_path):
    same = store.replace("test.db", "./test.db")
    assert "names the database copied from" in one_line_error("--to", same)
    assert "is not a database URL" in one_line_error("--to", "postgres:/nowhere")

    old = create_pg_database()
    try:
        upgrade(old, "0013")
        said = one_line_error("--to", old)
        assert "target database" in said and "at revision 0013" in said and "newsletter db upgrade" in said
        assert counts(old) == dict.fromkeys(TABLES, 0)
        drop_pg_database(old)
        old = create_pg_database()
        assert "has no schema: run `newsletter db upgrade`" in one_line_error("--to", old)
    finally:
        drop_pg_database(old)

    ahead = migrated_sqlite(tmp_path / "ahead")
    engine = create_engine(ahead)
    with engine.begin() as conn:  # upgraded by a release this one does not know
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    engine.dispose()
    assert "newer than this release" in one_line_error("--to", ahead)

    behind = f"sqlite:///{tmp_path / 'behind.db'}"
    upgrade(behind, "0013")
    said = one_line_error("--from", behind, "--to", pg_url)
    assert "source database" in said and "at revision 0013" in said

    assert copy_cli("--to", pg_url).exit_code == 0
    copied = dump(pg_url)
    said = one_line_error("--to", pg_url)  # a second copy would merge two lists
    assert "already has rows in consent_event" in said and "never merges" in said
    assert dump(pg_url) == copied


def test_a_row_the_target_refuses_rolls_the_whole_copy_back(store, pg_url):
    """SQLite keeps a string longer than its column allows; PostgreSQL refuses it. The papers
    copied before that subscriber are not left behind."""
    engine = create_engine(store)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE subscriber SET timezone = :z WHERE email = 'cy@example.org'"), {"z": "x" * 65}
        )
    engine.dispose()
    said = one_line_error("--to", pg_url)
    assert "could not copy subscriber" in said and "too long" in said and "nothing was written" in said
    assert counts(pg_url) == dict.fromkeys(TABLES, 0)


def test_the_password_of_either_url_is_never_printed(store, configure):
    with migrated_pg() as url:
        with_password = url.replace("postgres@", "postgres:hunter2-secret@", 1)  # trust auth
        result = copy_cli("--to", with_password)
        assert result.exit_code == 0, result.output
        assert "hunter2-secret" not in result.output and "postgres:***@" in result.output
        said = one_line_error("--to", with_password)
        assert "hunter2-secret" not in said and "***" in said
