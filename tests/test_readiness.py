"""Health that means something: `/readyz` and `newsletter check` fail until a worker and beat
are alive, and again once one of them stops; the schema and the database are checked too.

Real uvicorn, PostgreSQL, Redis, a Celery worker and beat; heartbeats every 0.5 s, stale at 3 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.migrate import upgrade
from newsletter.testing import create_pg_database, drop_pg_database, free_port, stop_process
from tests.conftest import ROOT, WebServer, Worker, process_env

pytestmark = pytest.mark.integration
METRICS_TOKEN = "metrics-token-for-the-readiness-test"


def ready(url: str) -> tuple[int, dict[str, dict]]:
    r = httpx.get(url + "/readyz", timeout=10)
    return r.status_code, {c["name"]: c for c in r.json()["checks"]}


def wait_for(url: str, predicate, timeout: float = 60.0) -> tuple[int, dict[str, dict]]:
    deadline = time.monotonic() + timeout
    while True:
        status, checks = ready(url)
        if predicate(status, checks) or time.monotonic() > deadline:
            return status, checks
        time.sleep(0.25)


def start_beat(env: dict[str, str], tmp) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "beat", "-s", str(tmp / "schedule"), "--pidfile="],
        cwd=ROOT,
        env=env,
        stdout=open(tmp / "beat.log", "ab"),  # noqa: SIM115 - the process writes to it until stopped
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def check_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "check", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ready_only_with_a_live_worker_and_beat(pg_url, redis_db, tmp_path):
    env = process_env(
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_BROKER_URL=redis_db,
        NEWSLETTER_HEARTBEAT_INTERVAL_SECONDS="0.5",
        NEWSLETTER_HEARTBEAT_MAX_AGE_SECONDS="3",
        NEWSLETTER_METRICS_TOKEN=METRICS_TOKEN,
    )
    web = WebServer(env, tmp_path / "web.log")
    worker = beat = None
    try:
        status, checks = ready(web.url)
        assert status == 503 and httpx.get(web.url + "/healthz").status_code == 200  # alive, not ready
        assert [n for n, c in checks.items() if c["ok"]] == ["database", "migrations", "broker"]
        assert "no heartbeat ever recorded" in checks["worker"]["detail"]
        assert "celery -A workers beat" in checks["beat"]["detail"]

        worker = Worker(env, log_path=tmp_path / "worker.log")
        worker.wait_ready(timeout=90)
        status, checks = wait_for(web.url, lambda s, c: c["worker"]["ok"])
        assert checks["worker"]["ok"] and status == 503 and not checks["beat"]["ok"]

        beat = start_beat(env, tmp_path)
        status, checks = wait_for(web.url, lambda s, c: s == 200)
        assert status == 200 and all(c["ok"] for c in checks.values()), checks
        body = httpx.get(web.url + "/readyz").text
        assert "127.0.0.1" not in body and "redis" not in body.lower() and "postgres" not in body
        metrics = httpx.get(web.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        for process in ("worker", "beat"):
            [age] = [
                line
                for line in metrics.splitlines()
                if f'heartbeat_age_seconds{{process="{process}"}}' in line
            ]
            assert float(age.rsplit(" ", 1)[1]) < 3
        cli = check_cli(env)
        assert cli.returncode == 0 and json.loads(cli.stdout)["ready"] is True, cli.stderr

        stopped = time.monotonic()
        worker.stop()
        status, checks = wait_for(web.url, lambda s, c: s == 503)
        print(f"readiness failed {time.monotonic() - stopped:.1f} s after the worker stopped")
        assert status == 503 and not checks["worker"]["ok"] and checks["beat"]["ok"]
        assert "last heartbeat" in checks["worker"]["detail"] and checks["worker"]["age_seconds"] > 3
        cli = check_cli(env)
        assert cli.returncode == 1 and not json.loads(cli.stdout)["ready"]
    finally:
        if beat is not None:
            stop_process(beat, group=True)
        if worker is not None:
            worker.stop()
        web.stop()


def test_an_old_schema_or_an_unreachable_database_fails_with_what_to_do(configure):
    old = create_pg_database()
    try:
        upgrade(old, "0004")
        configure(NEWSLETTER_DATABASE_URL=old)
        result = CliRunner().invoke(app, ["check"])
        assert result.exit_code == 1
        assert "FAIL migrations: database at 0004, code at " in result.stdout
        assert "run `newsletter db upgrade`" in result.stdout and "ok   database" in result.stdout
        assert "Not ready: migrations." in result.stdout
    finally:
        from newsletter.db import dispose_engines

        dispose_engines()
        drop_pg_database(old)

    configure(NEWSLETTER_DATABASE_URL=f"postgresql+psycopg://postgres:s3cretpw@127.0.0.1:{free_port()}/nl")
    result = CliRunner().invoke(app, ["check", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and not report["ready"]
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert set(failed) == {"database", "migrations"} and "OperationalError" in failed["database"]
    assert "s3cretpw" not in result.output and "127.0.0.1" not in result.output


def test_a_failed_heartbeat_check_never_reads_as_within_the_limit():
    from newsletter.readiness import _age_check

    late = _age_check("worker", 3.04, 3, "celery -A workers worker")
    assert not late.ok and late.age_seconds is not None and late.age_seconds > 3
    assert "last heartbeat 4 s ago (limit 3 s)" in late.detail
    fresh = _age_check("worker", 2.96, 3, "celery -A workers worker")
    assert fresh.ok and fresh.age_seconds == 3.0
