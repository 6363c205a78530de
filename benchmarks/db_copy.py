"""How long `newsletter db copy` takes to move a SQLite list to PostgreSQL, and what it holds.

    python benchmarks/db_copy.py [--readers 20000] [--json]

One run makes a SQLite store in a temporary folder with the sample feed and `readers` confirmed
readers imported through `newsletter subscribers import --confirmed` (a subscriber and a consent
row each), then one sent digest per reader in the ledger (written with one INSERT … SELECT: the
figure is the copy's, not a send's), and copies it into a throwaway PostgreSQL database
(migrated) with the function the command calls. It checks the counts on both sides and prints
the rows, seconds, rows/s and the process's peak memory before and after the copy (the copy
streams: the second should not grow with the list). PostgreSQL at NEWSLETTER_TEST_PG
(default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.import_csv import make_csv  # noqa: E402
from newsletter.config import settings_from  # noqa: E402
from newsletter.db import dispose_engines, session_scope  # noqa: E402
from newsletter.dbcopy import copied_tables, copy_database  # noqa: E402
from newsletter.importing import import_subscribers  # noqa: E402
from newsletter.migrate import upgrade  # noqa: E402
from newsletter.papers import ingest_records, read_feed, sample_feed_path  # noqa: E402
from newsletter.testing import create_pg_database, drop_pg_database  # noqa: E402

SENT_DIGESTS = """
INSERT INTO issue (frequency, period, title, paper_ids, created_at, send_errors)
VALUES ('weekly', '2026-W48', 'Paper Digest 2026-W48', '[1, 2, 3]', CURRENT_TIMESTAMP, 0);
INSERT INTO delivery (issue_id, subscriber_id, state, attempts, sent_at, message_id, smtp_code,
                      paper_ids, due_since)
SELECT 1, id, 'sent', 1, CURRENT_TIMESTAMP, '<' || id || '@news.example.org>', 250, '[1, 2, 3]',
       CURRENT_TIMESTAMP FROM subscriber;
"""


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {
            t.name: conn.execute(text(f"SELECT count(*) FROM {t.name}")).scalar_one() for t in copied_tables()
        }
    engine.dispose()
    return found


def make_store(folder: Path, readers: int) -> str:
    url = f"sqlite:///{folder / 'list.db'}"
    upgrade(url)
    settings = settings_from(mode="test", database_url=url)
    with session_scope(url) as session:
        ingest_records(session, read_feed(sample_feed_path()).records)
    import_subscribers(settings, make_csv(readers), "bench.csv", confirmed=True)
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in SENT_DIGESTS.split(";"):
            if statement.strip():
                conn.execute(text(statement))
    engine.dispose()
    return url


def run(readers: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        source = make_store(Path(folder), readers)
        target = create_pg_database("nl_bench_copy")
        try:
            upgrade(target)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            report = copy_database(source, target)
            seconds = time.perf_counter() - started
            assert counts(target) == counts(source) == report.rows, (counts(target), report.rows)
            return {
                "readers": report.rows["subscriber"],
                "rows": report.total,
                "rows_by_table": report.rows,
                "copy_s": round(seconds, 2),
                "rows_per_s": round(report.total / seconds),
                "sqlite_mb": round((Path(folder) / "list.db").stat().st_size / 2**20, 1),
                # the peak before the copy (making the store) and after: what the copy added
                "peak_rss_mb_before": round(rss_before / 1024),
                "peak_rss_mb_after": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        finally:
            dispose_engines()
            drop_pg_database(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.readers)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>14}: {value}")


if __name__ == "__main__":
    main()
