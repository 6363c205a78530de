"""How long the admin dashboard's queries take on a large list (PostgreSQL).

    python benchmarks/admin_dashboard.py [--subscribers 100000] [--issues 8]

Creates a throwaway PostgreSQL database (migrated), fills it in SQL with `subscribers` readers
confirmed over the last 12 weeks (one in 20 unsubscribed since), a consent row each (one in 50
a bounce), and `issues` weekly issues each sent to every reader; then times (best of 3) the
three queries behind /admin and /admin/subscribers: `dashboard.weekly_growth`,
`dashboard.issue_summaries` and a `search_subscribers` for part of an address.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from newsletter.dashboard import issue_summaries, search_subscribers, weekly_growth  # noqa: E402
from newsletter.db import dispose_engines, get_engine, session_scope  # noqa: E402
from newsletter.migrate import upgrade  # noqa: E402
from newsletter.testing import create_pg_database, drop_pg_database  # noqa: E402

READERS = """
INSERT INTO subscriber (email, email_key, interests, frequency, max_papers, status, token_key,
    token_version, created_at, updated_at, confirmed_at, unsubscribed_at, profile)
SELECT 'r' || g || '@example.org', 'r' || g || '@example.org', '', 'weekly'::frequency, 10,
    (CASE WHEN g % 20 = 0 THEN 'unsubscribed' ELSE 'confirmed' END)::subscriberstatus,
    md5(g::text), 0, now() - (g % 84) * interval '1 day', now(),
    now() - (g % 84) * interval '1 day',
    CASE WHEN g % 20 = 0 THEN now() - (g % 10) * interval '1 day' END, '{}'
FROM generate_series(1, :n) g
"""
CONSENT = """
INSERT INTO consent_event (subscriber_id, email_key, event, at)
SELECT id, email_key, CASE WHEN id % 50 = 0 THEN 'bounced' ELSE 'confirmed' END,
    now() - interval '1 day'
FROM subscriber
"""
ISSUE = """
INSERT INTO issue (frequency, period, title, paper_ids, created_at, send_errors)
VALUES ('weekly'::frequency, :p, :p, '[]', now() - :weeks * interval '7 day', 0) RETURNING id
"""
SENT = """
INSERT INTO delivery (issue_id, subscriber_id, state, attempts, paper_ids)
SELECT :i, id, 'sent'::deliverystate, 1, '[]' FROM subscriber
"""


def fill(url: str, subscribers: int, issues: int) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(text(READERS), {"n": subscribers})
        conn.execute(text(CONSENT))
        for week in range(issues):
            issue_id = conn.execute(
                text(ISSUE), {"p": f"2026-W{week + 1:02d}", "weeks": issues - week}
            ).scalar()
            conn.execute(text(SENT), {"i": issue_id})
        conn.execute(text("ANALYZE"))


def best_ms(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--issues", type=int, default=8)
    args = parser.parse_args()
    url = create_pg_database("nl_bench")
    try:
        upgrade(url)
        fill(url, args.subscribers, args.issues)
        with session_scope(url) as session:
            now = datetime.now(UTC)
            timed = {
                "weekly_growth": lambda: weekly_growth(session, now),
                f"issue_summaries({args.issues})": lambda: issue_summaries(session, args.issues),
                "search 'r1234'": lambda: search_subscribers(session, "r1234", limit=51),
            }
            print(f"{args.subscribers} subscribers, {args.issues} issues sent to each:")
            for name, fn in timed.items():
                print(f"  {name:<20} {best_ms(fn):7.0f} ms")
    finally:
        dispose_engines()
        drop_pg_database(url)


if __name__ == "__main__":
    main()
