"""The signup endpoint under a bounded loopback load, with the per-IP limit visibly at work.

    python benchmarks/signup_load.py [--rate 200] [--duration 30] [--ips 32]
        [--abuser-share 0.1] [--limit N] [--web-workers 1] [--json]

One run:

1. creates a throwaway PostgreSQL database (migrated) and starts a private `redis-server` (the
   broker and the shared rate-limit store), then a real `uvicorn --factory
   newsletter.web:create_app` on a free port. No Celery worker runs: queued confirmations stay in
   the broker, where they are counted.
2. sends POST /subscribe at a fixed rate (open loop: request i is due at start + i/rate, so a
   slow server shows as latency, not as a lower offered rate) for `duration` seconds, every
   request a distinct address. `1 - abuser_share` of the traffic comes from `ips` client IPs in
   turn; the rest from one abusive IP. The client IP travels in X-Forwarded-For, which uvicorn
   trusts from 127.0.0.1 only (its default `--forwarded-allow-ips`), as behind a local proxy.
3. the per-IP limit (NEWSLETTER_SIGNUP_RATE_PER_IP, a sliding one-minute window) is chosen,
   unless given, above what one ordinary IP sends in the whole run and below what the abusive IP
   sends in any minute of it: ordinary clients are never limited, the abuser is.
4. checks the outcome: every answer is 202 or, for the abuser only, 429 (anything else is an
   error); every accepted address is stored exactly once and no refused one at all; exactly one
   confirmation task per accepted subscriber waits in the broker.

Latency is measured from the moment a request was due (so queueing in the client counts), and
reported as p50/p90/p99/max for all answers and for accepted (202) ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from newsletter.testing import (  # noqa: E402
    PG_ADMIN as TEST_PG,
)
from newsletter.testing import (
    create_pg_database,
    drop_pg_database,
    free_port,
    queued_journey_emails,
    stop_process,
    wait_healthy,
)

PG_ADMIN = os.environ.get("NEWSLETTER_BENCH_PG", TEST_PG)
ABUSER_IP = "203.0.113.66"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (uvicorn --workers forks), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(p, 0.0) for p in tree)


def minutes(duration: float) -> int:
    """How many limits' worth a sliding one-minute window lets through in `duration` seconds."""
    return max(1, math.ceil(duration / 60))


def choose_limit(rate: float, duration: float, ips: int, abuser_share: float) -> int:
    """A per-minute limit no ordinary IP reaches in the run and the abuser clearly exceeds."""
    ordinary_per_ip = math.ceil(rate * (1 - abuser_share) * duration / ips)
    abuser_total = math.floor(rate * abuser_share * duration)
    low, high = ordinary_per_ip + 1, (abuser_total - 1) // minutes(duration)
    if low > high:
        raise SystemExit(
            f"cannot separate ordinary clients ({ordinary_per_ip} requests per IP) "
            f"from the abuser ({abuser_total}): raise --ips or --abuser-share"
        )
    return min(high, low + max(2, low // 4))


# ---- the stack ------------------------------------------------------------------------------


class Stack:
    """A throwaway PostgreSQL database, a private Redis and a uvicorn process."""

    def __init__(self, limit: int, web_workers: int) -> None:

        from newsletter.migrate import upgrade

        self.tmp = Path(tempfile.mkdtemp(prefix="signup-load-"))
        self.db_url = create_pg_database("nl_bench", PG_ADMIN)
        upgrade(self.db_url)

        redis_bin = shutil.which("redis-server")
        if not redis_bin:
            raise SystemExit("redis-server is not installed (scripts/system-deps.sh)")
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis = subprocess.Popen(
            [
                redis_bin,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(
            {
                "NEWSLETTER_MODE": "test",
                "NEWSLETTER_SECRET_KEY": "bench-secret-0123456789abcdef",
                "NEWSLETTER_BASE_URL": "https://news.example.org",
                "NEWSLETTER_MAIL_FROM": "Paper Digest <digest@news.example.org>",
                "NEWSLETTER_DATABASE_URL": self.db_url,
                "NEWSLETTER_BROKER_URL": self.redis_url,
                "NEWSLETTER_SIGNUP_RATE_PER_IP": str(limit),
                "PYTHONPATH": str(ROOT),
            }
        )
        self.log = open(self.tmp / "web.log", "ab")
        self.web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "newsletter.web:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--workers",
                str(web_workers),
                "--backlog",
                "2048",
                "--timeout-keep-alive",
                "120",
            ],  # no idle-close race with the client mid-run
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        try:
            wait_healthy(
                self.url,
                alive=lambda: self.web.poll() is None,
                describe=lambda: (self.tmp / "web.log").read_text()[-2000:],
            )
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"uvicorn did not start: {exc}") from exc

    def close(self) -> None:

        for proc in (self.web, self.redis):
            stop_process(proc)
        drop_pg_database(self.db_url, PG_ADMIN)
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- the load -------------------------------------------------------------------------------


def plan(rate: float, duration: float, ips: int, abuser_share: float) -> list[tuple[str, str]]:
    """(address, client ip) for every request, in send order; the abuser spread evenly."""
    total = int(rate * duration)
    every = max(1, round(1 / abuser_share)) if abuser_share > 0 else 0
    run = uuid.uuid4().hex[:6]
    requests, ordinary = [], 0
    for i in range(total):
        if every and i % every == every - 1:
            ip = ABUSER_IP
        else:
            ip = f"198.18.{ordinary % ips // 250}.{ordinary % ips % 250 + 1}"
            ordinary += 1
        requests.append((f"load-{run}-{i:06d}@example.org", ip))
    return requests


class Client:
    """A small HTTP/1.1 keep-alive client on asyncio streams: a load generator must cost far
    less CPU than the server it measures (httpx costs about a millisecond a request here)."""

    def __init__(self, port: int, size: int) -> None:
        self.port, self.size, self.open = port, size, 0
        self.idle: asyncio.Queue = asyncio.Queue()

    async def _connection(self):
        if self.idle.empty() and self.open < self.size:
            self.open += 1
            return await asyncio.open_connection("127.0.0.1", self.port)
        return await self.idle.get()

    async def post_form(self, path: str, fields: dict[str, str], headers: dict[str, str]):
        from urllib.parse import urlencode

        body = urlencode(fields).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{head}"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        reader, writer = await self._connection()
        try:
            writer.write(request)
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionError("connection closed before the answer")
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.open -= 1
            raise
        if close:
            writer.close()
            self.open -= 1
        else:
            self.idle.put_nowait((reader, writer))
        return status

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()


async def drive(port: int, requests: list[tuple[str, str]], rate: float, concurrency: int) -> list[dict]:
    results: list[dict] = []
    client = Client(port, concurrency)
    gate = asyncio.Semaphore(concurrency)
    start = time.perf_counter()

    async def one(i: int, address: str, ip: str) -> None:
        due = start + i / rate
        async with gate:
            sent = time.perf_counter()
            try:
                status = await client.post_form(
                    "/subscribe", {"email": address}, {"X-Forwarded-For": ip, "Accept": "application/json"}
                )
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                status = f"error: {type(exc).__name__}: {exc}"
            done = time.perf_counter()
        results.append(
            {"address": address, "ip": ip, "status": status, "latency": done - due, "service": done - sent}
        )

    tasks = []
    for i, (address, ip) in enumerate(requests):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, address, ip)))
    await asyncio.gather(*tasks)
    results.append({"elapsed": time.perf_counter() - start})
    await client.close()
    return results


# ---- checking the outcome -------------------------------------------------------------------


def stored(db_url: str) -> dict[str, list[int]]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT email_key, id FROM subscriber")).all()
    engine.dispose()
    found: dict[str, list[int]] = {}
    for key, sid in rows:
        found.setdefault(key, []).append(sid)
    return found


def run(
    rate: float,
    duration: float,
    ips: int,
    abuser_share: float,
    limit: int | None,
    web_workers: int,
    concurrency: int,
) -> dict:
    limit = limit or choose_limit(rate, duration, ips, abuser_share)
    requests = plan(rate, duration, ips, abuser_share)
    stack = Stack(limit, web_workers)
    try:
        load_before, cpu_before = os.getloadavg()[0], tree_cpu_seconds(stack.web.pid)
        results = asyncio.run(drive(stack.port, requests, rate, concurrency))
        server_cpu = tree_cpu_seconds(stack.web.pid) - cpu_before
        load_after = os.getloadavg()[0]
        windows = minutes(duration)
        elapsed = results.pop()["elapsed"]
        by_address = stored(stack.db_url)
        queued = queued_journey_emails(stack.redis_url, stack.db_url)
    finally:
        stack.close()

    statuses = Counter(str(r["status"]) for r in results)
    accepted = [r for r in results if r["status"] == 202]
    limited = [r for r in results if r["status"] == 429]
    errors = [r for r in results if r["status"] not in (202, 429)]
    ordinary_limited = [r for r in limited if r["ip"] != ABUSER_IP]
    abuser = [r for r in results if r["ip"] == ABUSER_IP]
    abuser_accepted = sum(1 for r in abuser if r["status"] == 202)
    accepted_addresses = {r["address"] for r in accepted}
    stored_once = sum(1 for a in accepted_addresses if len(by_address.get(a, [])) == 1)
    stored_twice = sum(1 for ids in by_address.values() if len(ids) > 1)
    stored_refused = sum(1 for r in limited if r["address"] in by_address)
    queued_once = sum(
        1
        for a in accepted_addresses
        if len(by_address.get(a, [])) == 1 and queued[("confirm", by_address[a][0])] == 1
    )
    latency = [r["latency"] * 1000 for r in results]
    accepted_latency = [r["latency"] * 1000 for r in accepted]

    def summary(values: list[float]) -> dict:
        return {
            "p50": percentile(values, 0.50),
            "p90": percentile(values, 0.90),
            "p99": percentile(values, 0.99),
            "max": max(values) if values else None,
        }

    report = {
        "offered_rate_per_s": rate,
        "duration_s": duration,
        "requests": len(results),
        "achieved_rate_per_s": round(len(results) / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "client_ips": ips,
        "abuser_ip": ABUSER_IP,
        "per_ip_limit_per_min": limit,
        "statuses": dict(statuses),
        "accepted": len(accepted),
        "rate_limited": len(limited),
        "rate_limited_ordinary": len(ordinary_limited),
        "errors": len(errors),
        "error_examples": [str(r["status"]) for r in errors[:5]],
        "abuser_requests": len(abuser),
        "abuser_accepted": abuser_accepted,
        "abuser_accepted_max": limit * windows,
        "stored_exactly_once": stored_once,
        "stored_more_than_once": stored_twice,
        "stored_although_refused": stored_refused,
        "subscribers_stored": sum(len(ids) for ids in by_address.values()),
        "confirmation_queued_exactly_once": queued_once,
        "confirmations_queued": sum(queued.values()),
        "web_workers": web_workers,
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(1, len(results)), 2),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1min_before": round(load_before, 2),
            "loadavg_1min_after": round(load_after, 2),
        },
        "latency_ms": {k: v and round(v, 1) for k, v in summary(latency).items()},
        "accepted_latency_ms": {k: v and round(v, 1) for k, v in summary(accepted_latency).items()},
    }
    report["ok"] = (
        report["errors"] == 0
        and report["rate_limited_ordinary"] == 0
        and len(limited) > 0
        and abuser_accepted <= limit * windows
        and stored_once == len(accepted) == report["subscribers_stored"]
        and stored_refused == 0
        and queued_once == len(accepted) == report["confirmations_queued"]
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--ips", type=int, default=32, help="ordinary client IPs")
    parser.add_argument(
        "--abuser-share", type=float, default=0.1, help="share of the requests from one abusive IP"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="per-IP signups a minute (default: chosen, see above)"
    )
    parser.add_argument("--web-workers", type=int, default=1, help="uvicorn processes")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="most requests in flight at once (client connections)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = run(
        args.rate, args.duration, args.ips, args.abuser_share, args.limit, args.web_workers, args.concurrency
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat, acc = report["latency_ms"], report["accepted_latency_ms"]
        print(
            f"{report['requests']} signups in {report['elapsed_s']} s "
            f"({report['achieved_rate_per_s']}/s offered {report['offered_rate_per_s']}/s), "
            f"{report['client_ips']} IPs + 1 abusive, limit {report['per_ip_limit_per_min']}/min"
        )
        print(
            f"answers: {report['statuses']}; errors {report['errors']}; "
            f"429 to ordinary clients {report['rate_limited_ordinary']}; abuser "
            f"{report['abuser_accepted']}/{report['abuser_requests']} accepted"
        )
        print(
            f"stored exactly once {report['stored_exactly_once']}/{report['accepted']}, "
            f"confirmation queued exactly once {report['confirmation_queued_exactly_once']}, "
            f"stored although refused {report['stored_although_refused']}"
        )
        print(
            f"latency ms: p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} max {lat['max']}"
            f" (accepted: p50 {acc['p50']} p99 {acc['p99']})"
        )
        print(
            f"server CPU {report['server_cpu_ms_per_request']} ms/request over "
            f"{report['web_workers']} uvicorn process(es); load average "
            f"{report['machine']['loadavg_1min_before']} -> "
            f"{report['machine']['loadavg_1min_after']} on {report['machine']['cpus']} CPUs"
        )
        print("OK" if report["ok"] else "NOT OK")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
