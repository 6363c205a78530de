"""A reader who leaves while their batch is being sent gets nothing (security review L5).

A slow real SMTP server (aiosmtpd, 0.3 s a message) keeps one batch of ten readers busy for
seconds; meanwhile one reader unsubscribes and another is erased, through the same admin
functions the CLI uses. SQLite and PostgreSQL (where "sent" is recorded in flight).
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from newsletter import admin, ledger
from newsletter.config import get_settings
from newsletter.db import get_engine
from newsletter.delivery import send_batch
from newsletter.ledger import DELIVERIES, plan_issue
from newsletter.models import utcnow
from newsletter.testing import configured_session
from tests.faultkit import delivery_rows, relay_world, wait_until


@pytest.mark.parametrize("pipelining", [False, True], ids=["lock-step", "pipelining"])
def test_a_reader_who_leaves_mid_batch_gets_nothing(configure, db_url, pipelining):
    """With a pipelining relay the leaver's envelope has already gone out behind the previous
    row's `.`: the data phase it opened is dropped, never ended."""
    with relay_world(configure, db_url, 10, NEWSLETTER_BATCH_SIZE="10") as (box, readers):
        box.data_delay, box.pipelining = 0.3, pipelining
        leaver, erased = readers[-2], readers[-1]  # the last rows of the one batch
        results: list[dict] = []
        sending = threading.Thread(target=lambda: results.append(admin.send_now(get_settings(), "weekly")))
        sending.start()
        wait_until(lambda: box.total() >= 2, 20, "the batch to be under way")
        admin.remove_subscriber(get_settings(), leaver, erase=False)
        admin.remove_subscriber(get_settings(), erased, erase=True)
        sending.join(30)
    assert box.received[leaver] == 0 and box.received[erased] == 0  # before the fix: both got it
    assert all(box.received[a] == 1 for a in readers[:-2])
    assert delivery_rows(db_url)[leaver][1:] == ("skipped", None, "no longer subscribed")
    assert results[0]["counts"] == {**results[0]["counts"], "sent": 8, "skipped": 1, "sending": 0}


def test_the_status_check_rides_on_the_sent_update(configure, pg_url, monkeypatch):
    """On PostgreSQL the next row's check (the reader's status, the issue's pause) comes back
    with the previous row's "sent" UPDATE: only the first row of a batch costs a query."""
    queries = []
    real = ledger.check_row
    monkeypatch.setattr(ledger, "check_row", lambda *args: queries.append(args) or real(*args))
    with relay_world(configure, pg_url, 8, NEWSLETTER_BATCH_SIZE="8") as (box, readers):
        result = admin.send_now(get_settings(), "weekly")
    assert result["counts"]["sent"] == 8 and all(box.received[a] == 1 for a in readers)
    assert len(queries) == 1


def test_a_prepared_statement_gone_from_the_server_is_prepared_again(configure, pg_url):
    """The sent-and-check statement is prepared once per database connection. If the server
    forgot it (DEALLOCATE ALL, as a pooler's reset does), that row is recorded the plain way and
    the statement is prepared again; every digest still goes out once."""
    with relay_world(configure, pg_url, 8) as (box, readers):
        with configured_session() as session:
            issue, _ = plan_issue(session)
        engine = get_engine(pg_url)
        with engine.connect() as conn:
            ids = list(conn.execute(DELIVERIES.select().with_only_columns(DELIVERIES.c.id)).scalars())
        assert send_batch(get_settings(), issue.id, sorted(ids)[:4])["sent"] == 4
        idle = [engine.connect() for _ in range(engine.pool.checkedin())]  # the batch's among them
        [used] = [c for c in idle if b"ledger_sent_and_check" in c.info.get("prepared", ())]
        used.execute(text("DEALLOCATE ALL"))
        used.commit()
        used_dbapi = used.connection.dbapi_connection
        used.close()  # back in the pool first (it hands out the longest idle)
        for conn in idle:
            if conn is not used:
                conn.invalidate()  # nothing else the next batch could be given
                conn.close()
        assert send_batch(get_settings(), issue.id, sorted(ids)[4:])["sent"] == 4
        idle = [engine.connect() for _ in range(engine.pool.checkedin())]
        [again] = [c for c in idle if c.connection.dbapi_connection is used_dbapi]
        prepared = "SELECT count(*) FROM pg_prepared_statements WHERE name = 'ledger_sent_and_check'"
        assert again.execute(text(prepared)).scalar() == 1  # prepared again after the miss
        for conn in idle:
            conn.close()
    assert sorted(box.received[a] for a in readers) == [1] * 8


def test_the_check_that_rides_on_the_sent_update_equals_check_row(configure, pg_url):
    """The pipelined statement's reading of the next row (status, pause, refusals; or nothing
    if the row is not ours) is the same as `ledger.check_row`'s."""
    with relay_world(configure, pg_url, 4) as (_, readers):
        with configured_session() as session:
            issue, _ = plan_issue(session)
        admin.remove_subscriber(get_settings(), readers[1], erase=False)
        engine = get_engine(pg_url)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            ids = sorted(conn.execute(DELIVERIES.select().with_only_columns(DELIVERIES.c.id)).scalars())
            ledger.claim(conn, issue.id, ids[:3], "me")
            conn.execute(text("UPDATE issue SET paused_at = now(), send_errors = 3"))
            recorder = ledger.SentRecorder(conn)
            for sent, following in [(ids[0], ids[1]), (ids[1], ids[2]), (ids[2], ids[3])]:
                values = {"sent_at": utcnow(), "message_id": "<m@x>", "paper_ids": [1]}
                recorder.record_sent(sent, "me", following, **values)
                recorder.wait()
                assert recorder.known is not None and recorder.known[0] == following
                assert recorder.known[1] == ledger.check_row(conn, following, "me")
            assert recorder.known[1] is None  # ids[3] was never claimed by "me"
            assert ledger.check_row(conn, ids[2], "me") is None  # sent now: no longer "sending"
