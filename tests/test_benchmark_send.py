"""The send-throughput benchmark keeps working: a tiny run through the real stack.

PostgreSQL, Redis, a real Celery worker, Postfix's smtp-sink. Timings are printed, never
asserted (they depend on the machine); what is asserted is what every run must hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

KEYS = {
    "sent",
    "digests_per_s",
    "plan_s",
    "raw_smtp_per_s",
    "raw_own_smtp_per_s",
    "ratio",
    "ratio_own",
    "pg_commits_per_s",
    "ledger_table_mb",
    "cpu_ms_per_digest",
    "peak_worker_rss_mb",
    "avg_message_kb",
    "dup",
    "lost",
}


def benchmark(script: str, *args: str) -> dict:
    """Run `benchmarks/<script> ... --json` as a person would (no NEWSLETTER_* settings but the
    test services'); its last line's JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    for name in ("NEWSLETTER_TEST_PG", "NEWSLETTER_TEST_REDIS"):
        if name in os.environ:
            env[name] = os.environ[name]
    command = [sys.executable, f"benchmarks/{script}", *args, "--json"]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tiny_benchmark_run_sends_everyone_exactly_once():
    if not (shutil.which("smtp-sink") or os.path.exists("/usr/sbin/smtp-sink")):
        pytest.fail("smtp-sink is not installed (Debian package postfix; scripts/system-deps.sh)")
    result = benchmark("send_throughput.py", "--subscribers", "200", "--workers", "1", "--raw-seconds", "1")
    print(result)
    assert set(result) >= KEYS
    assert result["sent"] == 200 and result["sink_received"] == 200
    assert result["dup"] == 0 and result["lost"] == 0
    assert result["planned"] == 200 and result["states"] == {"sent": 200}
    assert result["avg_message_kb"] > 5 and result["raw_smtp_per_s"] > 0
    assert result["raw_own_smtp_per_s"] > 0 and result["ledger_table_mb"] > 0
    # each "sent" is a commit: the figure was read before PostgreSQL had counted them (13/s)
    assert result["pg_commits_per_s"] >= result["digests_per_s"]


def test_the_import_benchmark_runs_and_measures_updates():
    """benchmarks/import_csv.py failed on every run once `--update` counted only the rows that
    change something: its second import was the same file (all `unchanged`)."""
    result = benchmark("import_csv.py", "--rows", "1000")
    assert (result["rows"], result["bad_rows"]) == (1000, 1)
    assert result["first_rows_per_s"] > 0 and result["update_rows_per_s"] > 0
