"""How long `newsletter subscribers import` takes for a large CSV on PostgreSQL.

    python benchmarks/import_csv.py [--rows 100000] [--json]

One run creates a throwaway PostgreSQL database (migrated), writes a CSV of `rows` distinct
addresses with interests, frequency and digest size (1 row in 1,000 bad, to exercise the
report), and times, through the same function the command calls:

1. `first`: the default import (double opt-in): every address new, a subscriber row, a consent
   row and a confirmation email in the journey outbox each. A Redis broker is configured but no
   worker runs, so the one sweep job the import queues after its commit just waits there (no
   email is sent: the figure is the import's own work).
2. `again`: the same addresses with other interests, with `--update`: every address known,
   every row an UPDATE (the same file again changes nothing: each row is `unchanged`, and
   asserting "updated" made the script fail on every run since `--update` counts only changes).

It checks the counts in the database and fails loudly if they are wrong. PostgreSQL at
NEWSLETTER_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres), Redis at
NEWSLETTER_TEST_REDIS (default redis://127.0.0.1:6379, a database nobody uses, claimed as the
send benchmark does: picked from the pid, one in use by someone else was flushed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.send_throughput import flush_redis, private_redis_db  # noqa: E402
from newsletter.config import settings_from  # noqa: E402
from newsletter.db import dispose_engines  # noqa: E402
from newsletter.importing import import_subscribers  # noqa: E402
from newsletter.migrate import upgrade  # noqa: E402
from newsletter.testing import create_pg_database, drop_pg_database  # noqa: E402

REDIS = os.environ.get("NEWSLETTER_TEST_REDIS", "redis://127.0.0.1:6379")
TOPICS = ["graph neural networks", "protein folding", "diffusion models", "robot learning", ""]


def make_csv(rows: int, shift: int = 0) -> bytes:
    """`rows` lines; `shift` gives every reader another digest size and, but for the readers
    left without interests, other interests (the file for the update)."""
    lines = ["email,interests,frequency,max_papers"]
    for i in range(rows):
        if i % 1000 == 999:
            lines.append(f"broken-{i}.example.org,,,")  # no @: reported, not imported
            continue
        frequency = "daily" if i % 7 == 0 else "weekly"
        topic = TOPICS[(i + shift) % len(TOPICS)]
        lines.append(f"reader{i}@example{i % 97}.org,{topic},{frequency},{5 + (i + shift) % 10}")
    return ("\n".join(lines) + "\n").encode()


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("subscriber", "consent_event", "journey_email")
        }
    engine.dispose()
    return found


def timed(settings, data: bytes, **flags: bool) -> tuple[float, dict]:
    started = time.perf_counter()
    report = import_subscribers(settings, data, "bench.csv", **flags)
    return time.perf_counter() - started, report.model_dump()


def run(rows: int) -> dict:
    url = create_pg_database("nl_bench_import")
    broker, _claim = private_redis_db()
    try:
        upgrade(url)
        settings = settings_from(mode="test", database_url=url, broker_url=broker)
        data = make_csv(rows)
        bad = rows // 1000
        first_s, first = timed(settings, data)
        assert (first["created"], len(first["errors"]), first["emails_queued"]) == (
            rows - bad,
            bad,
            rows - bad,
        )
        assert counts(url) == dict.fromkeys(("subscriber", "consent_event", "journey_email"), rows - bad)
        again_s, again = timed(settings, make_csv(rows, shift=1), update=True)
        assert (again["created"], again["updated"]) == (0, rows - bad), again
        return {
            "rows": rows,
            "bad_rows": bad,
            "first_import_s": round(first_s, 2),
            "first_rows_per_s": round(rows / first_s),
            "update_import_s": round(again_s, 2),
            "update_rows_per_s": round(rows / again_s),
            "csv_mb": round(len(data) / 2**20, 2),
        }
    finally:
        flush_redis(broker)
        dispose_engines()
        drop_pg_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.rows)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['rows']:,} rows ({result['csv_mb']} MB, {result['bad_rows']} bad): "
        f"new addresses {result['first_import_s']} s ({result['first_rows_per_s']:,}/s), "
        f"again with --update {result['update_import_s']} s ({result['update_rows_per_s']:,}/s)"
    )


if __name__ == "__main__":
    main()
