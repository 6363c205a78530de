"""A burst of signups: how many confirmation emails per second a real Celery worker sends.

    python benchmarks/journey_burst.py [--signups 10000] [--workers 2] [--code DIR] [--json]

One run:

1. creates a throwaway PostgreSQL database (migrated) and writes N pending subscribers, each
   with its pending `confirm` row in the journey outbox: what N signups leave behind (the
   signup request itself is measured by benchmarks/signup_load.py);
2. measures, in this process, the CPU one confirmation email takes to build
   (`transactional_message`) with the HTML inlined once per process (as sent) and with a plain
   render + premailer per email (as before issue 16): a ratio from one process in one window;
3. starts Postfix's `smtp-sink` and one `celery -A workers worker` with K prefork processes on a
   private Redis database, publishes one `send_journey_email` task per row (as the signups'
   commits do) and waits until every row is sent.

`--code DIR` runs the worker from another checkout (e.g. `git archive <rev> | tar -x -C DIR`),
so a "before" is measured against the same database, sink and broker set-up; run the two
back to back and compare them next to `host_cpu_busy` (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.send_throughput import (  # noqa: E402
    BASE_ENV,
    Sink,
    Workers,
    cpu_seconds,
    create_database,
    drop_database,
    flush_redis,
    host_cpu,
    log,
    private_redis_db,
)
from newsletter.models import new_token_key  # noqa: E402


def write_signups(db_url: str, n: int) -> list[int]:
    """N pending subscribers and their pending confirmation rows; the rows' ids."""
    import psycopg

    now = datetime.now(UTC).isoformat()
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    cols = (
        "email, email_key, interests, frequency, max_papers, status, token_key, token_version, "
        "created_at, updated_at, profile"
    )
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY subscriber ({cols}) FROM STDIN") as copy:
            for i in range(1, n + 1):
                address = f"signup{i}@example.org"
                copy.write(
                    f"{address}\t{address}\trobot learning\tweekly\t10\tpending\t{new_token_key()}\t0\t"
                    f"{now}\t{now}\t{{}}\n"
                )
        cur.execute(
            "INSERT INTO journey_email (subscriber_id, kind, state, attempts, created_at, next_attempt_at) "
            "SELECT id, 'confirm', 'pending', 0, %s, %s::timestamptz + interval '1 day' FROM subscriber "
            "ORDER BY id RETURNING id",
            (now, now),
        )
        ids = [row[0] for row in cur.fetchall()]
        conn.commit()
    return ids


def build_cpu_ms(n: int) -> dict[str, float]:
    """CPU ms to build one confirmation email, assembled (as sent) and with premailer each time."""
    from newsletter.config import get_settings
    from newsletter.mail import journey_html, transactional
    from newsletter.mail.render import render_email
    from newsletter.models import Subscriber, SubscriberStatus

    settings = get_settings()
    subs = [
        Subscriber(
            id=i,
            email=f"r{i}@example.org",
            email_key=f"r{i}@example.org",
            status=SubscriberStatus.pending,
            interests="robot learning",
            token_version=0,
        )
        for i in range(1, n + 1)
    ]
    out = {}
    for name, render in (("assembled", journey_html.render_journey_email), ("premailer_each", render_email)):
        transactional.render_journey_email = render  # type: ignore[attr-defined]
        transactional.transactional_message(settings, "confirm", subs[0])  # warm the caches
        t = time.process_time()
        for sub in subs:
            transactional.transactional_message(settings, "confirm", sub)
        out[name] = round(1000 * (time.process_time() - t) / n, 3)
    transactional.render_journey_email = journey_html.render_journey_email  # type: ignore[attr-defined]
    return out


def outbox_figures(db_url: str) -> dict:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT state, count(*) FROM journey_email GROUP BY state")).all())
        last = conn.execute(text("SELECT extract(epoch FROM max(sent_at)) FROM journey_email")).scalar()
        retried = conn.execute(text("SELECT count(*) FROM journey_email WHERE attempts > 1")).scalar()
    engine.dispose()
    return {
        "states": {str(k): v for k, v in states.items()},
        "last_sent": float(last or 0),
        "retried": retried,
    }


def run(args: argparse.Namespace) -> dict:
    quiet = args.json
    tmp = Path(tempfile.mkdtemp(prefix="journey-bench-"))
    cleanup: list = []
    code = Path(args.code).resolve() if args.code else ROOT
    result: dict = {"signups": args.signups, "workers": args.workers, "code": str(code)}
    try:
        db_url = create_database()
        cleanup.append(lambda: drop_database(db_url))
        from newsletter.migrate import upgrade

        upgrade(db_url)
        sink = Sink()
        cleanup.append(sink.stop)
        broker, _claim = private_redis_db()
        cleanup.append(lambda: flush_redis(broker))
        env = {
            **BASE_ENV,
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(sink.port),
            "NEWSLETTER_BROKER_URL": broker,
        }
        for k in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            del os.environ[k]
        os.environ.update(env)
        from newsletter.config import get_settings, reset_settings

        reset_settings()
        result["build_cpu_ms_per_email"] = build_cpu_ms(args.build_sample)
        log(f"build CPU per confirmation email (ms): {result['build_cpu_ms_per_email']}", quiet)
        ids = write_signups(db_url, args.signups)
        log(f"{len(ids)} signups written", quiet)

        queue = f"journey-{uuid.uuid4().hex[:8]}"
        from newsletter.worker import publisher

        celery_app = publisher(get_settings())
        celery_app.conf.task_default_queue = queue
        worker_env = {**os.environ, "PYTHONPATH": str(code)}
        workers = Workers(worker_env, args.workers, queue, tmp / "worker.log", cwd=code)
        cleanup.append(workers.stop)
        workers.wait_ready()
        sink_before = sink.count(settle=0.2)
        cpu_before, host_before = cpu_seconds(workers.proc.pid), host_cpu()
        t0 = time.time()
        for email_id in ids:
            celery_app.send_task("newsletter.send_journey_email", args=[email_id])
        publish_s = time.time() - t0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            figures = outbox_figures(db_url)
            if figures["states"].get("sent", 0) >= len(ids):
                break
            time.sleep(0.5)
        cpu_after, host_after = cpu_seconds(workers.proc.pid), host_cpu()
        sent = figures["states"].get("sent", 0)
        elapsed = (figures["last_sent"] or time.time()) - t0
        received = sink.count() - sink_before
        result.update(
            sent=sent,
            confirmations_per_s=round(sent / elapsed, 1) if elapsed > 0 else 0.0,
            send_s=round(elapsed, 2),
            publish_s=round(publish_s, 2),
            worker_cpu_ms_per_email=round(1000 * (cpu_after - cpu_before) / max(sent, 1), 2),
            host_cpu_busy=round((host_after[0] - host_before[0]) / max(host_after[1] - host_before[1], 1), 2),
            sink_received=received,
            dup=max(received - sent, 0),
            lost=len(ids) - sent,
            retried_rows=figures["retried"],
            states=figures["states"],
        )
        return result
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: {exc!r}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="prefork processes (K)")
    parser.add_argument("--code", help="run the worker from this checkout (a 'before')")
    parser.add_argument("--build-sample", type=int, default=300, help="emails built in-process per variant")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0 if result.get("lost") == 0 and result.get("dup") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
