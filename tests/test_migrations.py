"""Migrations bring a store with data up to the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy import inspect as sa_inspect
from sqlmodel import SQLModel

import newsletter.models  # noqa: F401 - registers the tables
from newsletter.migrate import upgrade
from newsletter.testing import create_pg_database, drop_pg_database

SQLITE_OWN_TABLES = ("alembic_version", "sqlite_sequence")
NOW = datetime(2026, 11, 1, tzinfo=UTC).isoformat(" ")


def rows_of_revision_0001(url: str) -> dict[str, int]:
    """Subscribers with a delivery, a vote and a consent row, as revision 0001 stored them; the
    last subscriber then erased, which freed the highest id. Returns the ids by address."""

    def insert(sql: str, **params: object) -> int:
        return conn.execute(text(sql + " RETURNING id"), {"now": NOW, **params}).scalar_one()

    engine = create_engine(url)
    with engine.begin() as conn:
        ids = {
            address: insert(
                "INSERT INTO subscriber (email, email_key, interests, frequency, max_papers, status, "
                "token_version, created_at, updated_at, profile) VALUES "
                "(:a, :a, 'robots', 'weekly', 5, 'confirmed', 1, :now, :now, '{}')",
                a=address,
            )
            for address in ("ada@example.org", "bob@example.org", "erased@example.org")
        }
        paper = insert(
            "INSERT INTO paper (title_key, title, abstract, authors, keywords, upvotes, published_at, "
            "ingested_at, source) VALUES ('t', 'T', '', '[]', '[]', 0, :now, :now, 'file')"
        )
        issue = insert(
            "INSERT INTO issue (frequency, period, title, paper_ids, created_at) "
            "VALUES ('weekly', '2026-W44', 'Issue', '[1]', :now)"
        )
        ada, bob = ids["ada@example.org"], ids["bob@example.org"]
        insert(
            "INSERT INTO delivery (issue_id, subscriber_id, state, attempts, paper_ids) "
            "VALUES (:i, :s, 'sent', 1, '[1]')",
            i=issue,
            s=ada,
        )
        insert(
            "INSERT INTO vote (issue_id, paper_id, subscriber_id, direction, at) "
            "VALUES (:i, :p, :s, 1, :now)",
            i=issue,
            p=paper,
            s=bob,
        )
        insert(
            "INSERT INTO consent_event (subscriber_id, email_key, event, at) "
            "VALUES (:s, 'ada@example.org', 'x', :now)",
            s=ada,
        )
        conn.execute(text("DELETE FROM subscriber WHERE id = :s"), {"s": ids["erased@example.org"]})
    engine.dispose()
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at_0001(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0001")
        yield url
        return
    url = create_pg_database()
    try:
        upgrade(url, "0001")
        yield url
    finally:
        drop_pg_database(url)


def test_0002_gives_every_subscriber_a_token_key_and_never_reuses_ids(store_at_0001):
    url = store_at_0001
    ids = rows_of_revision_0001(url)
    ada, bob, erased = ids.values()
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        keys = dict(conn.execute(text("SELECT id, token_key FROM subscriber ORDER BY id")).all())
        assert sorted(keys) == [ada, bob]
        assert all(len(k) == 22 for k in keys.values()) and len(set(keys.values())) == 2
        assert conn.execute(text("SELECT count(*) FROM delivery")).scalar() == 1  # data kept
        assert conn.execute(text("SELECT subscriber_id FROM vote")).scalar() == bob
        conn.execute(text("DELETE FROM vote"))
        conn.execute(text("DELETE FROM subscriber WHERE id = :bob"), {"bob": bob})
        conn.execute(
            text(
                "INSERT INTO subscriber (email, email_key, interests, frequency, max_papers, status, "
                "token_key, token_version, created_at, updated_at, profile) VALUES "
                "('new@example.org', 'new@example.org', '', 'weekly', 5, 'pending', 'k', 0, :now, :now, '{}')"
            ),
            {"now": NOW},
        )
        new_id = conn.execute(text("SELECT id FROM subscriber WHERE email_key = 'new@example.org'")).scalar()
        assert new_id > bob  # bob's id is never handed out again
        assert new_id >= erased  # (SQLite: an id freed at the end before 0002 may come back once)
        if url.startswith("sqlite"):
            tables = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
            plain = [n for n, sql in tables if "AUTOINCREMENT" not in sql and n not in SQLITE_OWN_TABLES]
            assert plain == [] and len(tables) >= 7
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == [], diff  # the migrated store is what the models declare
    engine.dispose()


def test_0002_downgrades_and_upgrades_again(store_at_0001):
    from alembic import command

    from newsletter.migrate import alembic_config

    url = store_at_0001
    rows_of_revision_0001(url)
    upgrade(url, "0002")
    command.downgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    with engine.connect() as conn:
        columns = [c["name"] for c in sa_inspect(conn).get_columns("subscriber")]
        assert "token_key" not in columns and "email_key" in columns
        if url.startswith("sqlite"):
            schema = " ".join(
                r[0] for r in conn.execute(text("SELECT sql FROM sqlite_master WHERE type='table'"))
            )
            assert "AUTOINCREMENT" not in schema
    engine.dispose()
    upgrade(url)


def test_every_migration_downgrades_to_nothing_and_upgrades_again(store_at_0001):
    """On PostgreSQL the downgrade of 0001 left its enum types behind, so upgrading again
    failed: 'type "frequency" already exists'."""
    from alembic import command

    from newsletter.migrate import alembic_config

    url = store_at_0001
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = create_engine(url)
    with engine.connect() as conn:
        assert set(sa_inspect(conn).get_table_names()) <= {"alembic_version", "sqlite_sequence"}
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    engine.dispose()


def test_0012_starts_each_open_rows_window_at_its_issues_last_planning(store_at_0001):
    """Rows already in the ledger count their retry window from their issue's last planning (its
    creation if never planned), so the upgrade gives no row up sooner than before."""
    url = store_at_0001
    rows_of_revision_0001(url)
    upgrade(url, "0011")
    engine = create_engine(url)
    with engine.begin() as conn:
        later = conn.execute(
            text(
                "INSERT INTO issue (frequency, period, title, paper_ids, created_at, planned_at) "
                "VALUES ('weekly', '2026-W45', 'Later', '[1]', :now, :planned) RETURNING id"
            ),
            {"now": NOW, "planned": datetime(2026, 11, 5, tzinfo=UTC).isoformat(" ")},
        ).scalar_one()
        reader = conn.execute(text("SELECT min(id) FROM subscriber")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO delivery (issue_id, subscriber_id, state, attempts, paper_ids) "
                "VALUES (:i, :s, 'deferred', 2, '[]')"
            ),
            {"i": later, "s": reader},
        )
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        matches = conn.execute(
            text(
                "SELECT d.due_since = COALESCE(i.planned_at, i.created_at) "
                "FROM delivery d JOIN issue i ON i.id = d.issue_id ORDER BY d.id"
            )
        ).scalars()
        assert [bool(m) for m in matches] == [True, True]
    engine.dispose()


def test_0014_keys_non_ascii_addresses_in_lower_case_and_downgrades(store_at_0001):
    """Keys were case-folded: Straße@ stored as strasse@, so strasse@'s signup found Straße@'s
    row. 0014 rewrites such keys (the reader's consent rows too); ASCII ones stay as they are."""
    url = store_at_0001
    rows_of_revision_0001(url)
    upgrade(url, "0013")

    def keys() -> list[tuple[str, ...]]:
        with engine.connect() as conn:
            readers = conn.execute(text("SELECT email, email_key FROM subscriber ORDER BY id")).all()
            consent = conn.execute(text("SELECT email_key FROM consent_event ORDER BY id")).scalars()
            return [tuple(r) for r in readers] + [tuple(consent)]

    engine = create_engine(url)
    with engine.begin() as conn:
        straße = conn.execute(
            text(
                "INSERT INTO subscriber (email, email_key, interests, frequency, max_papers, status, "
                "token_key, token_version, created_at, updated_at, profile) VALUES ('Straße@example.org', "
                "'strasse@example.org', '', 'weekly', 5, 'confirmed', 'k', 0, :now, :now, '{}') RETURNING id"
            ),
            {"now": NOW},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO consent_event (subscriber_id, email_key, event, at) "
                "VALUES (:s, 'strasse@example.org', 'confirmed', :now)"
            ),
            {"s": straße, "now": NOW},
        )
        conn.execute(
            text("INSERT INTO suppression (address_hash, reason, at) VALUES ('h', 'erased', :now)"),
            {"now": NOW},
        )
    folded = keys()
    assert folded[-2] == ("Straße@example.org", "strasse@example.org")
    upgrade(url)
    with engine.connect() as conn:  # hashes of folded keys: looked for as such (suppression.py)
        assert conn.execute(text("SELECT folded FROM suppression")).scalars().all() == [True]
    assert keys() == [
        ("ada@example.org", "ada@example.org"),
        ("bob@example.org", "bob@example.org"),
        ("Straße@example.org", "straße@example.org"),
        ("ada@example.org", "straße@example.org"),
    ]
    from alembic import command

    from newsletter.migrate import alembic_config

    command.downgrade(alembic_config(url), "0013")
    assert keys() == folded
    engine.dispose()


REPAIRED = {  # what main at a 30 Nov 2026 merge ran, by the revisions its chain skipped
    "ce32222": ("0002_token_keys", "0003_journey_outbox", "0004_issue_pause"),
    "6965429": ("0002_token_keys", "0004_issue_pause"),
    "4d54c80": ("0002_token_keys",),
    "e3e784d": ("0006_bounce_events", "0007_reader_schedule"),
    "468db80": ("0007_reader_schedule",),
}


@pytest.mark.parametrize("skipped", REPAIRED.values(), ids=REPAIRED.keys())
def test_0013_repairs_a_store_whose_chain_skipped_revisions(store_at_0001, skipped):
    """A store made at one of those commits was stamped past revisions it never ran: `db
    upgrade` said "up to date" and every command failed on a missing column (subscriber.weekday,
    subscriber.token_key). The store is rebuilt here as it was (head without what the skipped
    revisions add, readers in it), then upgraded: it ends as the models declare, readers kept."""
    from alembic import command
    from alembic.operations import Operations

    from newsletter.migrate import alembic_config

    url = store_at_0001
    rows_of_revision_0001(url)
    upgrade(url, "0012")
    repair = _revision("0013_repair_rechained")
    engine = create_engine(url)
    with engine.begin() as conn:
        context = MigrationContext.configure(conn, opts={"render_as_batch": True})
        with Operations.context(context):
            for name in reversed(skipped):
                repair.revision_module(name).downgrade()
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) != []
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    engine = create_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        readers = conn.execute(text("SELECT email, token_key FROM subscriber ORDER BY id")).all()
        assert [r.email for r in readers] == ["ada@example.org", "bob@example.org"]
        assert all(r.token_key for r in readers)
    engine.dispose()


def _revision(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "migrations" / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
