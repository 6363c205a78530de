"""Per-digest build CPU in one process: the plain-text part by Jinja and by assembly.

    python benchmarks/digest_build.py [--subscribers 2000] [--json]

Creates a throwaway PostgreSQL database, ingests the shared papers, writes N subscribers (the
send benchmark's mix of interests), plans an issue and, for every reader, times in this one
process (CPU time, so other load on the machine matters less): the text part rendered by the
Jinja template for that reader (before issue 16), the same text assembled from the issue's
one render (after; the two are checked equal), and the whole `digest_message` as the worker
builds it (ranking, links, HTML, text, MIME), which now contains the assembled text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.send_throughput import (  # noqa: E402
    BASE_ENV,
    SHARED_PAPERS,
    copy_subscribers,
    create_database,
    drop_database,
    ingest_papers,
)


def measure(n: int) -> dict:
    from sqlmodel import select

    from newsletter.assemble import text_template
    from newsletter.config import get_settings, reset_settings
    from newsletter.delivery import digest_message
    from newsletter.digests import SHELL_SLOTS, full_context, reader_links, renderer_for
    from newsletter.ledger import plan_issue
    from newsletter.models import Frequency, Subscriber
    from newsletter.templating import text_env
    from newsletter.testing import configured_session

    reset_settings()
    settings = get_settings()
    with configured_session() as session:
        issue, _ = plan_issue(session, Frequency.weekly)
        subs = session.exec(select(Subscriber).order_by(Subscriber.id).limit(n)).all()
    renderer = renderer_for(settings, issue.id)
    renderer.template, renderer.text  # noqa: B018 - built once per issue, not timed per reader
    jinja = assembled = 0.0
    for sub in subs:
        items = renderer.items(sub, renderer.rank(sub))
        context = full_context(settings, issue, sub, items, reader_links(settings, sub, issue.id))
        t = time.process_time()
        plain = text_template(text_env(settings)).render(context)
        jinja += time.process_time() - t
        cards = [(i.paper.id, {"why": i.why, "more_url": i.more_url, "less_url": i.less_url}) for i in items]
        t = time.process_time()
        fast = renderer.text.assemble(cards, {k: context[k] for k in SHELL_SLOTS}, context["sections"])
        assembled += time.process_time() - t
        if fast.strip() != plain.strip():
            raise AssertionError(f"assembled text differs for {sub.email}")
    t = time.process_time()
    for sub in subs:
        digest_message(settings, renderer, sub, set())
    whole = time.process_time() - t
    ms = lambda s: round(1000 * s / len(subs), 3)  # noqa: E731
    return {
        "readers": len(subs),
        "text_jinja_ms": ms(jinja),
        "text_assembled_ms": ms(assembled),
        "digest_message_ms_after": ms(whole),
        "digest_message_ms_before_est": ms(whole + jinja - assembled),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    db_url = create_database()
    try:
        from newsletter.migrate import upgrade

        upgrade(db_url)
        for k in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            del os.environ[k]
        os.environ.update({**BASE_ENV, "NEWSLETTER_DATABASE_URL": db_url})
        from newsletter.config import reset_settings

        reset_settings()
        if SHARED_PAPERS.exists():
            ingest_papers(SHARED_PAPERS)
        else:
            from newsletter.papers import sample_feed_path

            ingest_papers(Path(sample_feed_path()))
        copy_subscribers(db_url, args.subscribers)
        result = measure(args.subscribers)
    finally:
        drop_database(db_url)
    print(json.dumps(result) if args.json else "\n".join(f"{k:>30}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
