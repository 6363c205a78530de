"""`newsletter send --now` with a broker: it never waits on workers that are not there.

A real Redis broker, PostgreSQL, an SMTP server and (for the second half) a real Celery worker;
the command runs as the operator runs it, as a process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from sqlalchemy import create_engine, text

from newsletter import admin, liveness
from newsletter.errors import OperatorError
from newsletter.testing import free_port
from tests.conftest import ROOT, Worker, insert_confirmed_readers, process_env

pytestmark = pytest.mark.integration


def newsletter(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - started


def count(db_url: str, sql: str) -> int:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        value = conn.execute(text(sql)).scalar_one()
    engine.dispose()
    return value


@pytest.fixture
def env(configure, pg_url, redis_db, smtp_server):
    _box, port = smtp_server
    env = process_env(
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_BROKER_URL=redis_db,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
    )
    settings = configure(**{k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    admin.ingest(settings)
    for address in ("ada@example.org", "bob@example.org"):
        admin.add_subscriber(settings, address, "robots", "weekly", 5, confirmed=True)
    return env


def test_no_worker_stops_at_once_and_no_wait_queues_for_the_worker(
    env, pg_url, redis_db, smtp_server, tmp_path
):
    box, _ = smtp_server
    result, seconds = newsletter(env, "send", "--now")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: no worker answered a ping on redis://127.0.0.1:6379/")
    assert "celery -A workers worker" in line and "--no-wait" in line
    # The ping waits 2 s (NEWSLETTER_WORKER_PING_TIMEOUT_SECONDS); the rest is starting Python,
    # measured with a command that reads the same database (the machine may be busy).
    baseline = newsletter(env, "issues", "list")[1]
    print(f"send --now with no worker: exit 1 after {seconds:.1f} s ({baseline:.1f} s for `issues list`)")
    assert seconds < baseline + 6, (seconds, baseline)
    assert count(pg_url, "SELECT count(*) FROM issue") == 0  # nothing planned, nothing half-done

    queued, seconds = newsletter(env, "send", "--now", "--no-wait")
    assert queued.returncode == 0, queued.stderr
    assert "2 new deliveries planned and queued" in " ".join(queued.stdout.split())
    assert redis.Redis.from_url(redis_db).llen("celery") == 1  # the dispatch waits for a worker
    assert box.messages == []

    worker = Worker(env, log_path=tmp_path / "worker.log")
    try:
        worker.wait_ready(timeout=90)  # a busy shared machine starts Celery slowly
        assert len(box.wait_for(2, timeout=60)) == 2  # the queued send goes out once a worker runs
    finally:
        worker.stop()


def test_a_worker_present_sends_and_the_command_waits_for_it(env, smtp_server, tmp_path):
    box, _ = smtp_server
    worker = Worker(env, log_path=tmp_path / "worker.log")
    try:
        worker.wait_ready(timeout=90)  # a busy shared machine starts Celery slowly
        sent, seconds = newsletter(env, "send", "--now")
    finally:
        worker.stop()
    assert sent.returncode == 0, sent.stderr
    assert "2 new deliveries planned. Sent 2, skipped 0, failed 0, still open 0." in " ".join(
        sent.stdout.split()
    )
    assert f"Issue 1: 2 deliveries; waiting for {worker.name}@" in sent.stderr
    assert len(box.parsed()) == 2
    print(f"send --now with a worker, 2 digests: {seconds:.1f} s")


def test_an_unreachable_broker_is_one_line_and_fast(env, configure):
    broker = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    started = time.monotonic()  # timed in this process: no interpreter start-up in the figure
    with pytest.raises(OperatorError, match="cannot reach the broker"):
        liveness.ping_workers(configure(NEWSLETTER_BROKER_URL=broker))
    assert time.monotonic() - started < 5
    result, _ = newsletter({**env, "NEWSLETTER_BROKER_URL": broker}, "send", "--now")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert (
        line.startswith("Error: cannot reach the broker at redis://:**@127.0.0.1:") and "s3cret" not in line
    )


def test_with_the_broker_down_no_wait_and_resume_say_one_line_and_keep_what_they_did(env, pg_url):
    """`send --now --no-wait` planned the issue, then ended in kombu's traceback; `issues resume`
    cleared the pause, then the traceback, and a second try said "not paused; nothing to
    resume" (the admin API answered 500, then 400)."""
    down = {**env, "NEWSLETTER_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result, _ = newsletter(down, "send", "--now", "--no-wait")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "cannot reach the broker" in line and "Issue 1 is planned (2 deliveries)" in line
    assert count(pg_url, "SELECT count(*) FROM delivery WHERE state = 'pending'") == 2  # kept for later
    with create_engine(pg_url).begin() as conn:
        conn.execute(text("UPDATE issue SET paused_at = now(), pause_reason = 'wrong papers' WHERE id = 1"))
    for _ in range(2):  # and a second try says the same: the issue stayed paused
        result, _ = newsletter(down, "issues", "resume", "1")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "Issue 1 stays paused" in result.stderr
        assert count(pg_url, "SELECT count(*) FROM issue WHERE pause_reason = 'wrong papers'") == 1


def test_a_worker_lost_while_waiting_stops_the_command_with_one_line(env, pg_url, tmp_path):
    """The ping passed, then the only worker died: the command notices within
    NEWSLETTER_SEND_STALL_SECONDS of no progress (30 s by default; 12 here, past the first 10 s
    progress line), pings again and stops, instead of waiting for an hour."""
    env = {**env, "NEWSLETTER_SEND_STALL_SECONDS": "12"}
    settings_env = {k: v for k, v in env.items() if k.startswith("NEWSLETTER_")}
    # enough readers that the send is still going when the worker dies
    insert_confirmed_readers(settings_env["NEWSLETTER_DATABASE_URL"], 400, "robots")
    worker = Worker(env, log_path=tmp_path / "worker.log")
    worker.wait_ready(timeout=90)
    started = time.monotonic()
    cli = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", "--now"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert cli.stderr is not None
        assert "waiting for" in cli.stderr.readline()  # the ping passed and the issue is queued
        os.killpg(worker.proc.pid, signal.SIGKILL)  # the worker and its pool, mid-send
        out, err = cli.communicate(timeout=90)
    finally:
        worker.stop()
        if cli.poll() is None:
            cli.kill()
    seconds = time.monotonic() - started
    print(f"send --now after its worker died: exit {cli.returncode} after {seconds:.1f} s")
    assert cli.returncode == 1, (out, err)
    assert seconds < 28, "the 12 s stall setting was not honoured (the default is 30 s)"
    *progress, line = [x for x in err.splitlines() if x.strip()]
    assert progress and all(p.startswith("Issue 1: ") for p in progress)  # "N of M done" in a log
    assert line.startswith("Error: no worker answered") and "issue 1's remaining deliveries go out" in line
    assert count(pg_url, "SELECT count(*) FROM delivery WHERE state <> 'sent'") > 0  # it did stop mid-send
