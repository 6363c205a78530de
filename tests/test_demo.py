"""`newsletter demo` replaces only what an earlier demo made: pointed at a real database or mail
folder it stops before touching anything."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "demo", *args],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_demo_refuses_a_folder_or_database_it_did_not_make_and_reruns_over_its_own(tmp_path):
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "important.eml").write_text("keep me")
    real = tmp_path / "real.db"
    with sqlite3.connect(real) as db:
        db.execute("CREATE TABLE readers (address TEXT)")
        db.execute("INSERT INTO readers VALUES ('someone@example.org')")

    refused = demo(tmp_path, "--outbox", "mail", "--database", "fresh.db")
    assert refused.returncode == 1
    assert "--outbox mail already exists and was not made by the demo" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (mail / "important.eml").read_text() == "keep me"
    assert not (tmp_path / "fresh.db").exists()

    refused = demo(tmp_path, "--outbox", "demo-mail", "--database", "real.db")
    assert refused.returncode == 1
    assert "--database real.db already exists and was not made by the demo" in refused.stderr
    with sqlite3.connect(real) as db:
        assert db.execute("SELECT address FROM readers").fetchall() == [("someone@example.org",)]
    assert not (tmp_path / "demo-mail").exists()

    # Its own paths, run twice: the second run replaces the first's mail and database.
    for _ in range(2):
        ran = demo(tmp_path, "--outbox", "demo-mail", "--database", "demo.db")
        assert ran.returncode == 0, ran.stderr
        assert "4 digests sent" in ran.stdout
        assert len(list((tmp_path / "demo-mail").glob("*.eml"))) == 12

    # The demo's folder with another database that exists: still refused.
    refused = demo(tmp_path, "--outbox", "demo-mail", "--database", "real.db")
    assert refused.returncode == 1 and "--database real.db already exists" in refused.stderr
    assert real.exists() and len(list((tmp_path / "demo-mail").glob("*.eml"))) == 12
