"""Production logs: every line a process writes is one JSON object, and no link token appears.

A real Celery worker, beat and `newsletter serve` (two web processes) run in production mode from
one settings file, outside the repository; a reader signs up and confirms over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from newsletter.testing import free_port, stop_process, wait_healthy
from tests.conftest import PRODUCTION_ENV, ROOT, SECRET, text_part

BIN = Path(sys.executable).parent


def production_env_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "newsletter.env"
    settings = {
        "NEWSLETTER_MODE": "production",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": "https://papers.yourlab.org",
        **PRODUCTION_ENV,
        **values,
    }
    path.write_text("".join(f'{key}="{value}"\n' for key, value in settings.items()))
    return path


def start(argv: list[str], env: dict[str, str], cwd: Path, out: Path, err: Path) -> subprocess.Popen:
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True)


def json_lines(*paths: Path) -> list[dict]:
    """Every line of every file, each parsed as JSON (an AssertionError names the first that is not)."""
    records = []
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{path.name}: not JSON: {line!r}") from None
    return records


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc.poll() is None, f"{what} exited: {log.read_text()[-2000:]}"
        time.sleep(0.2)


def test_every_line_of_web_worker_and_beat_is_json_without_tokens(tmp_path, pg_url, redis_db, smtp_server):
    box, smtp_port = smtp_server
    env_file = production_env_file(
        tmp_path,
        NEWSLETTER_DATABASE_URL=pg_url,
        NEWSLETTER_BROKER_URL=redis_db,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(smtp_port),
        NEWSLETTER_LOG_LEVEL="INFO",
        NEWSLETTER_RECOVER_INTERVAL_SECONDS="2",  # beat ticks soon
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_ENV_FILE=str(env_file), PYTHONPATH=str(ROOT))
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    port = free_port()
    logs = {name: (tmp_path / f"{name}.out", tmp_path / f"{name}.err") for name in ("web", "worker", "beat")}
    celery = [str(BIN / "celery"), "-A", "workers"]
    procs = {
        "worker": start([*celery, "worker", "--loglevel=INFO", "-c", "1"], env, elsewhere, *logs["worker"]),
        "beat": start(
            [*celery, "beat", "--loglevel=INFO", "-s", str(tmp_path / "schedule")],
            env,
            elsewhere,
            *logs["beat"],
        ),
        "web": start(
            [str(BIN / "newsletter"), "serve", "--port", str(port), "--workers", "2"],
            env,
            elsewhere,
            *logs["web"],
        ),
    }
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: b" ready." in logs["worker"][1].read_bytes(),
            60,
            "the worker",
            procs["worker"],
            logs["worker"][1],
        )
        wait_healthy(
            url, alive=lambda: procs["web"].poll() is None, describe=logs["web"][1].read_text, timeout=60
        )
        with httpx.Client(base_url=url, headers={"Accept": "application/json"}) as client:
            assert client.post("/subscribe", json={"email": "ada@yourlab.org"}).status_code == 202
            [msg] = box.wait_for(1)
            assert "Example Labs, 1 Main St, Springfield" in text_part(msg)
            confirm = re.search(r"/confirm/([\w.-]+)", text_part(msg)).group(1)
            assert client.post(f"/confirm/{confirm}").status_code == 200
            assert client.get("/unsubscribe/not-a-token").status_code == 400
        box.wait_for(2)  # the welcome email, sent by the worker
        wait_until(
            lambda: b"Sending due task" in logs["beat"][1].read_bytes(),
            60,
            "beat",
            procs["beat"],
            logs["beat"][1],
        )
    finally:
        for proc in procs.values():
            stop_process(proc, timeout=15, group=True)

    for name, (out, err) in logs.items():
        records = json_lines(out, err)
        assert records, name
        loaded = [r for r in records if r["event"] == "config_loaded"]
        assert loaded and loaded[0]["path"] == str(env_file) and loaded[0]["mode"] == "production", name
        for record in records:
            assert confirm not in json.dumps(record), (name, record)
    loggers = {name: {r["logger"] for r in json_lines(*paths)} for name, paths in logs.items()}
    assert {"uvicorn.error", "newsletter.web"} <= loggers["web"], loggers["web"]
    assert any(name.startswith("celery.") for name in loggers["worker"]), loggers["worker"]
    assert "celery.beat" in loggers["beat"], loggers["beat"]
    received = [r for r in json_lines(*logs["worker"]) if "received" in r["event"]]
    assert received, "the worker logged no task"
