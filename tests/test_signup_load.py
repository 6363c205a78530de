"""A tiny run of benchmarks/signup_load.py (the figures in docs/guarantees.md come from the full
one): real uvicorn on PostgreSQL, a private Redis, distinct addresses from many client IPs and one
abusive IP. Only outcomes are asserted, never speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_signup_load_tiny_run_no_errors_every_accepted_signup_stored_and_queued_once():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "signup_load.py"),
            "--rate",
            "60",
            "--duration",
            "3",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    assert report["errors"] == 0, report["error_examples"]
    assert set(report["statuses"]) <= {"202", "429"}
    assert report["rate_limited_ordinary"] == 0  # only the abusive IP is limited
    assert report["rate_limited"] > 0
    assert report["abuser_accepted"] <= report["abuser_accepted_max"]
    assert report["stored_exactly_once"] == report["accepted"] == report["subscribers_stored"]
    assert report["stored_although_refused"] == 0
    assert report["confirmation_queued_exactly_once"] == report["accepted"] == report["confirmations_queued"]
    assert report["latency_ms"]["p50"] is not None and report["ok"] is True
    assert done.returncode == 0
