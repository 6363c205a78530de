"""How fast a personalised issue goes out, through the real path, next to the raw SMTP limit.

    python benchmarks/send_throughput.py --subscribers N [--workers K] [--dkim] [--json]
        [--smtp-host H --smtp-port P] [--naive] [--plan-only] [--batch-size B]
        [--raw-seconds S] [--unique-interests] [--async-commit] [--relay-rtt-ms MS]
        [--profile OUT.txt [--profile-idle]]

Needs PostgreSQL and Redis on localhost (as the tests do: NEWSLETTER_TEST_PG / _REDIS override
the addresses) and Postfix's `smtp-sink`. One run:

1. creates a throwaway PostgreSQL database (migrated), ingests the shared papers, and COPYs in N
   confirmed subscribers with varied interests;
2. plans one issue (`plan_issue`, INSERT … SELECT), timed as `plan_s`; `--plan-only` stops here;
3. starts `smtp-sink` (unless --smtp-host is given), which answers 250 to everything and counts
   the messages it received;
4. measures the raw SMTP limit: K processes, one connection each, pushing pre-built digests of the
   same size as fast as they can, once with smtplib (`raw_smtp_per_s`, the baseline of rounds 1
   and 2) and once with the workers' own client as a batch uses it, pipelined where the sink
   offers it, each message's `.` followed by the next envelope (`raw_own_smtp_per_s`), each with
   its CPU per message;
5. starts one `celery -A workers worker` with K prefork processes on a private Redis database and
   queue, dispatches the issue (`dispatch_issue`) and waits for the ledger to close: real
   renderer, real MIME (and DKIM with --dkim, a fresh RSA-2048 key), real SMTP to the same sink,
   K connections (one per process). Everything is torn down afterwards.

Figures: `digests_per_s` = sent / (last sent_at − dispatch start), planning excluded; `ratio` =
digests_per_s / raw_smtp_per_s (smtplib), `ratio_own` = digests_per_s / raw_own_smtp_per_s;
`pg_commits_per_s` = the database's committed transactions during the send (pg_stat_database)
per second; `ledger_table_mb` = pg_total_relation_size of the ledger table after the send;
`cpu_ms_per_digest` = CPU time of the worker processes (pool and main) during the send / sent;
`peak_worker_rss_mb` = the largest RSS of a pool process, sampled every 0.1 s; `avg_message_kb`
over a sample of real digests; `host_cpu_busy` = how busy the whole machine was during the send
(other people's work included: read figures next to it). `dup` =
messages the sink received minus ledger rows marked sent (each row is one subscriber: the ledger
is unique per issue and subscriber), so anything sent twice shows up; `lost` = confirmed
subscribers without a sent row. With an external --smtp-host the sink cannot be asked, so `dup`
is then null.

Comparisons: `--naive` runs the design this replaces (premailer per recipient, one Celery task
and SMTP connection per recipient: benchmarks/naive_app.py); `--unique-interests` gives every
reader interests of their own (no ranking is shared); `--async-commit` is a what-if with
`synchronous_commit = off` on the throwaway database (see RESULTS.md); `--relay-rtt-ms MS` puts
a delay proxy (`DelayProxy`) between everything and the sink, as if the relay were a round trip
of MS away (the raw limits go through it too). `--profile OUT` records the
worker processes with py-spy during the send and prints the top functions (CPU; wall-clock time
with --profile-idle). Results and profiles: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import multiprocessing
import os
import random
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from newsletter.models import new_token_key
from newsletter.testing import PG_ADMIN as TEST_PG
from newsletter.testing import create_pg_database, dkim_test_key, drop_pg_database, free_port, stop_process

PG_ADMIN = os.environ.get("NEWSLETTER_BENCH_PG", TEST_PG)
REDIS = os.environ.get(
    "NEWSLETTER_BENCH_REDIS", os.environ.get("NEWSLETTER_TEST_REDIS", "redis://127.0.0.1:6379")
)
SHARED_PAPERS = ROOT.parent / "shared" / "data" / "trending-papers.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

BASE_ENV = {
    "NEWSLETTER_MODE": "test",
    "NEWSLETTER_SECRET_KEY": "bench-secret-0123456789abcdef",
    "NEWSLETTER_BASE_URL": "https://news.example.org",
    "NEWSLETTER_MAIL_FROM": "Paper Digest <digest@news.example.org>",
    "NEWSLETTER_LIST_ID": "Paper Digest <digest.news.example.org>",
}

# Interests people write: 1-3 of these, some with a little noise, and some readers with none.
TOPICS = [
    "large language models",
    "LLM agents and tool use",
    "reinforcement learning",
    "robot learning",
    "robotic manipulation",
    "diffusion models",
    "image generation",
    "video generation",
    "medical image segmentation",
    "computer vision",
    "3D reconstruction",
    "neural radiance fields",
    "speech recognition",
    "text to speech",
    "machine translation",
    "retrieval augmented generation",
    "question answering",
    "chain of thought reasoning",
    "mathematical reasoning",
    "code generation",
    "graph neural networks",
    "continual learning",
    "catastrophic forgetting",
    "meta learning",
    "few-shot learning",
    "self-supervised learning",
    "contrastive learning",
    "representation learning",
    "interpretability",
    "mechanistic interpretability",
    "alignment and RLHF",
    "preference optimization",
    "model compression",
    "quantization",
    "knowledge distillation",
    "mixture of experts",
    "efficient transformers",
    "long context",
    "multimodal models",
    "vision language models",
    "world models",
    "embodied agents",
    "open-ended exploration",
    "curriculum learning",
    "neuroscience-inspired AI",
    "cognitive science",
    "education and tutoring",
    "benchmarks",
    "synthetic data",
    "hallucination",
    "web agents",
    "time series forecasting",
]


# ---- small helpers ----------------------------------------------------------------------------


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def create_database() -> str:
    return create_pg_database("nl_bench", PG_ADMIN)


def drop_database(url: str) -> None:
    from newsletter.db import dispose_engines

    dispose_engines()
    drop_pg_database(url, PG_ADMIN)


def private_redis_db() -> tuple[str, str]:
    """A Redis database nobody uses right now, claimed with a key; returns (url, claim key)."""
    import redis

    token = f"bench:{os.getpid()}:{uuid.uuid4().hex}"
    order = [15] + [1 + (os.getpid() + i) % 14 for i in range(14)]
    for db in order:
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.dbsize() == 0 and client.set("bench:claim", token, nx=True, ex=6 * 3600):
            if client.dbsize() == 1:
                return f"{REDIS}/{db}", token
            client.delete("bench:claim")
    raise RuntimeError("no empty Redis database to use")


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


# ---- data -------------------------------------------------------------------------------------


def interests_for(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return ""
    picks = rng.sample(TOPICS, k=1 if roll < 0.4 else 2 if roll < 0.8 else 3)
    text = ", ".join(picks)
    if rng.random() < 0.2:
        text = "mostly " + text + rng.choice([" for robots", " in medicine", " and theory", ""])
    return text


def copy_subscribers(db_url: str, n: int, seed: int = 7, unique: bool = False) -> None:
    """N confirmed weekly subscribers, COPYed in (1M rows in a few seconds). With `unique`,
    every reader's interests end in a word of their own, so no two readers share a ranking."""
    import psycopg

    rng = random.Random(seed)
    now = datetime.now(UTC).isoformat()
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    cols = (
        "email, email_key, interests, frequency, max_papers, status, token_key, token_version, "
        "created_at, updated_at, confirmed_at, profile"
    )
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY subscriber ({cols}) FROM STDIN") as copy:
            chunk = []
            for i in range(1, n + 1):
                address = f"reader{i}@example.org"
                interests = interests_for(rng).replace("\t", " ")
                if unique:
                    interests = f"{interests} zq{i}".strip()
                chunk.append(
                    f"{address}\t{address}\t{interests}\tweekly\t10\tconfirmed\t{new_token_key()}\t0\t"
                    f"{now}\t{now}\t{now}\t{{}}\n"
                )
                if len(chunk) >= 20_000:
                    copy.write("".join(chunk))
                    chunk = []
            if chunk:
                copy.write("".join(chunk))
        conn.commit()
        cur.execute("ANALYZE subscriber")
        conn.commit()


def ingest_papers(path: Path) -> int:
    from newsletter import admin
    from newsletter.config import get_settings

    report = admin.ingest(get_settings(), path=path)
    return report["added"] + report["updated"] + report["unchanged"]


def make_dkim_key(folder: Path) -> Path:
    path = folder / "dkim.pem"
    (folder / "dkim.txt").write_bytes(dkim_test_key(path))
    return path


def sample_messages(issue_id: int, count: int) -> list[bytes]:
    """Real digests for the first `count` subscribers, built the way the workers build them."""
    from sqlmodel import select

    from newsletter.config import get_settings
    from newsletter.delivery import digest_message
    from newsletter.digests import renderer_for
    from newsletter.models import Subscriber
    from newsletter.testing import configured_session

    settings = get_settings()
    renderer = renderer_for(settings, issue_id)
    with configured_session() as session:
        subs = session.exec(select(Subscriber).order_by(Subscriber.id).limit(count)).all()
    out = []
    for sub in subs:
        built = digest_message(settings, renderer, sub, set())
        if built is not None:
            out.append(built[0])
    return out


# ---- the sink ---------------------------------------------------------------------------------


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delivers each chunk `delay` seconds after it arrived."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            await asyncio.start_server(self._client, "127.0.0.1", self.port)
            ready.set()
            await asyncio.Event().wait()

        self.loop.run_until_complete(main())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.close()
                    return
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        while True:
            data = await reader.read(65536)
            await queue.put((self.loop.time() + self.delay, data))
            if not data:
                break
        await task


class Sink:
    """Postfix's smtp-sink on a free port; `received` is its running count of messages."""

    def __init__(self) -> None:
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not Path(exe).exists():
            raise RuntimeError("smtp-sink not found (Debian package postfix)")
        self.port = free_port()
        cmd = [exe, "-c"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        cmd += [f"127.0.0.1:{self.port}", "1000"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.received = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        wait_port("127.0.0.1", self.port)

    def _read(self) -> None:
        buf = b""
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                return
            buf += data
            *lines, buf = buf.replace(b"\n", b"\r").split(b"\r")
            for line in reversed(lines):
                fields = dict(f.split(b"=", 1) for f in line.split() if b"=" in f)
                if b"mesg" in fields:
                    with self._lock:
                        self.received = max(self.received, int(fields[b"mesg"]))
                    break

    def count(self, settle: float = 0.5) -> int:
        """The count once it has stopped moving for `settle` seconds."""
        last = -1
        while True:
            with self._lock:
                now = self.received
            if now == last:
                return now
            last = now
            time.sleep(settle)

    def stop(self) -> None:
        stop_process(self.proc, timeout=5)


# ---- the raw SMTP limit -----------------------------------------------------------------------


def _raw_pusher(
    host: str, port: int, messages: list[bytes], start_at: float, seconds: float, queue, client: str
) -> None:
    if client == "smtplib":
        smtp = smtplib.SMTP(host, port, timeout=30)
        smtp.ehlo()

        def send(i: int, message: bytes) -> None:
            smtp.sendmail("digest@news.example.org", [f"raw{i}@example.org"], message)

        close = smtp.quit
    else:  # ours (newsletter/mail/smtp.py): what the workers use, pipelined where the sink offers it
        from newsletter.config import get_settings
        from newsletter.mail.smtp import SMTPSender

        sender = SMTPSender(get_settings())
        ahead = "then" in inspect.signature(sender.end).parameters  # (not in an older checkout)

        def send(i: int, message: bytes) -> None:
            # As a batch sends: the next envelope behind each `.`, where the code has that.
            sender.begin(f"raw{i}@example.org", message, mail_from="digest@news.example.org")
            if ahead:
                sender.end(then=(f"raw{i + 1}@example.org", "digest@news.example.org"))
            else:
                sender.end()

        close = sender.close
    while time.time() < start_at:
        time.sleep(0.001)
    sent, i = 0, 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        send(i, messages[i % len(messages)])
        sent += 1
        i += 1
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    close()
    queue.put((sent, elapsed, cpu))


def raw_smtp_rate(
    host: str, port: int, messages: list[bytes], connections: int, seconds: float, client: str = "smtplib"
) -> tuple[float, int, float]:
    """Pre-built messages pushed with `client` (smtplib, or "ours": the workers' client), one
    connection per process, as fast as possible: (messages/s, sent, CPU ms per message)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [
        ctx.Process(target=_raw_pusher, args=(host, port, messages, start_at, seconds, queue, client))
        for _ in range(connections)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    sent = sum(r[0] for r in results)
    return (
        sum(n / elapsed for n, elapsed, _ in results),
        sent,
        1000 * sum(r[2] for r in results) / max(sent, 1),
    )


# ---- worker processes -------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                children.setdefault(int(st[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process tree, including children it has already reaped."""
    total = 0
    for pid in process_tree(root):
        st = _stat(pid)
        if st:  # utime stime cutime cstime are fields 14-17, i.e. st[11:15]
            total += sum(int(x) for x in st[11:15])
    return total / CLK_TCK


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def rss_mb(pid: int) -> float:
    st = _stat(pid)
    return int(st[21]) * PAGE_SIZE / 2**20 if st else 0.0  # field 24: rss in pages


class Workers:
    """`celery -A workers worker -P prefork --concurrency K` on its own queue."""

    def __init__(
        self,
        env: dict[str, str],
        concurrency: int,
        queue: str,
        log_path: Path,
        app: str = "workers",
        cwd: Path = ROOT,
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                "worker",
                "-P",
                "prefork",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.concurrency = concurrency

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"ready." in self.log_path.read_bytes() and len(self.children()) >= self.concurrency:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError("worker did not become ready")

    def children(self) -> list[int]:
        return [p for p in process_tree(self.proc.pid) if p != self.proc.pid]

    def stop(self) -> None:
        stop_process(self.proc, timeout=20, group=True)
        self._log.close()


class Sampler(threading.Thread):
    """Peak RSS of the worker processes, sampled while the issue goes out."""

    def __init__(self, workers: Workers, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.workers, self.every = workers, every
        self.peak_child = 0.0
        self.peak_main = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every)

    def sample(self) -> None:
        self.peak_main = max(self.peak_main, rss_mb(self.workers.proc.pid))
        for pid in self.workers.children():
            self.peak_child = max(self.peak_child, rss_mb(pid))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


# ---- profiling --------------------------------------------------------------------------------


def start_profiler(pid: int, out: Path, idle: bool) -> subprocess.Popen:
    """py-spy on the worker and its pool processes: CPU samples, or wall-clock with `idle`."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(out),
            "--nonblocking",
        ]
        + (["--idle"] if idle else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(proc: subprocess.Popen, out: Path) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    return summarise_profile(out) if out.exists() else "(no profile written)"


def summarise_profile(path: Path, top: int = 30, within: str = "send_batch") -> str:
    """Share of samples per function inside `within` (the task), from py-spy's collapsed stacks:
    CPU time, or wall-clock time (waiting on PostgreSQL, SMTP, Redis too) with --profile-idle."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for f in stack.split(";"):
            name, _, where = f.partition(" (")
            frames.append(f"{name} ({where.rsplit(':', 1)[0].split('site-packages/')[-1]})")
        starts = [i for i, f in enumerate(frames) if f.startswith(within + " (")]
        if not starts:
            continue
        frames = frames[starts[0] :]
        n = int(count)
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    if not total:
        return "(no samples inside " + within + ")"
    lines = [f"{total} samples inside {within}; inclusive% (own%):"]
    for f, n in inclusive.most_common(top):
        lines.append(f"  {100 * n / total:5.1f}% ({100 * own[f] / total:4.1f}%)  {f}")
    lines.append("top own time:")
    for f, n in own.most_common(12):
        lines.append(f"  {100 * n / total:5.1f}%  {f}")
    return "\n".join(lines)


# ---- the run ----------------------------------------------------------------------------------


def ledger_figures(issue_id: int) -> dict:
    from sqlalchemy import text

    from newsletter.config import get_settings
    from newsletter.db import get_engine

    with get_engine(get_settings().database_url).connect() as conn:
        states = dict(
            conn.execute(
                text("SELECT state, count(*) FROM delivery WHERE issue_id = :i GROUP BY state"),
                {"i": issue_id},
            ).all()
        )
        last = conn.execute(
            text("SELECT max(sent_at) FROM delivery WHERE issue_id = :i"), {"i": issue_id}
        ).scalar()
        lost = conn.execute(
            text(
                "SELECT count(*) FROM subscriber s WHERE s.status = 'confirmed' AND NOT EXISTS "
                "(SELECT 1 FROM delivery d WHERE d.subscriber_id = s.id AND d.issue_id = :i "
                "AND d.state = 'sent')"
            ),
            {"i": issue_id},
        ).scalar()
        retried = conn.execute(
            text("SELECT count(*) FROM delivery WHERE issue_id = :i AND attempts > 1"), {"i": issue_id}
        ).scalar()
    states = {(k.value if hasattr(k, "value") else str(k)): v for k, v in states.items()}
    return {
        "states": states,
        "last_sent": last.timestamp() if last else None,
        "lost": lost,
        "retried": retried,
    }


def pg_commits() -> int:
    """Transactions committed in the benchmark's database so far (pg_stat_database)."""
    from sqlalchemy import text

    from newsletter.config import get_settings
    from newsletter.db import get_engine

    with get_engine(get_settings().database_url).connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(
            conn.execute(
                text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            ).scalar()
        )


def settled_commits(before: int, at_least: int, wait: float = 11.0) -> int:
    """The commits since `before`, once the workers' statistics are in: PostgreSQL 15+ keeps an
    idle backend's counts for up to 10 s, so reading after a fixed 1.1 s gave 13-116 commits/s for
    a send of 220-500 digests/s (each "sent" is at least one commit). Read until at least
    `at_least` are counted, or `wait` seconds have passed."""
    deadline = time.monotonic() + wait
    while (commits := pg_commits() - before) < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
    return commits


def ledger_size_mb() -> float:
    """The ledger table's size with its indexes and TOAST (pg_total_relation_size), in MB."""
    from sqlalchemy import text

    from newsletter.config import get_settings
    from newsletter.db import get_engine

    with get_engine(get_settings().database_url).connect() as conn:
        size = conn.execute(text("SELECT pg_total_relation_size('delivery')")).scalar()
    return round(int(size) / 2**20, 1)


def open_rows(issue_id: int) -> int:
    from sqlalchemy import text

    from newsletter.config import get_settings
    from newsletter.db import get_engine

    with get_engine(get_settings().database_url).connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM delivery WHERE issue_id = :i AND state IN "
                "('pending', 'sending', 'deferred')"
            ),
            {"i": issue_id},
        ).scalar()


def run(args: argparse.Namespace) -> dict:
    quiet = args.json
    tmp = Path(tempfile.mkdtemp(prefix="send-bench-"))
    cleanup: list = []
    result: dict = {
        "subscribers": args.subscribers,
        "workers": args.workers,
        "dkim": args.dkim,
        "naive": args.naive,
        "async_commit": args.async_commit,
        "unique_interests": args.unique_interests,
    }
    try:
        db_url = create_database()
        cleanup.append(lambda: drop_database(db_url))
        from newsletter.migrate import upgrade

        upgrade(db_url)
        if args.async_commit:  # what-if: commits stop waiting for the WAL flush (see RESULTS.md)
            from sqlalchemy import create_engine, text

            admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(
                    text(f'ALTER DATABASE "{db_url.rsplit("/", 1)[1]}" SET synchronous_commit = off')
                )
            admin.dispose()
        batch_size = 1 if args.naive else args.batch_size
        env = {**BASE_ENV, "NEWSLETTER_DATABASE_URL": db_url, "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox")}
        if batch_size:
            env["NEWSLETTER_BATCH_SIZE"] = str(batch_size)
        if args.dkim:
            key = make_dkim_key(tmp)
            env.update(
                NEWSLETTER_DKIM_SELECTOR="bench",
                NEWSLETTER_DKIM_DOMAIN="news.example.org",
                NEWSLETTER_DKIM_PRIVATE_KEY_PATH=str(key),
            )
        for k in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            del os.environ[k]
        os.environ.update(env)
        from newsletter.config import get_settings, reset_settings

        reset_settings()
        papers = args.papers or (SHARED_PAPERS if SHARED_PAPERS.exists() else None)
        if papers is None:
            from newsletter.papers import sample_feed_path

            papers = sample_feed_path()
        result["papers"] = ingest_papers(Path(papers))
        t = time.perf_counter()
        copy_subscribers(db_url, args.subscribers, unique=args.unique_interests)
        result["load_s"] = round(time.perf_counter() - t, 2)
        log(f"{args.subscribers} subscribers loaded in {result['load_s']} s", quiet)

        from newsletter.ledger import plan_issue
        from newsletter.models import Frequency
        from newsletter.testing import configured_session

        t = time.perf_counter()
        with configured_session() as session:
            issue, planned = plan_issue(session, Frequency.weekly)
            issue_id = issue.id
        result["plan_s"] = round(time.perf_counter() - t, 3)
        result["planned"] = planned
        result["ledger_table_mb_planned"] = ledger_size_mb()
        log(f"planned {planned} deliveries in {result['plan_s']} s", quiet)
        if args.plan_only:
            return result

        # the sink, and the raw limit through it
        sink = None
        if args.smtp_host:
            host, port = args.smtp_host, args.smtp_port
        else:
            sink = Sink()
            cleanup.append(sink.stop)
            host, port = "127.0.0.1", sink.port
            if args.relay_rtt_ms:
                port = DelayProxy(sink.port, args.relay_rtt_ms / 2000).port
                result["relay_rtt_ms"] = args.relay_rtt_ms
        os.environ.update(NEWSLETTER_SMTP_HOST=host, NEWSLETTER_SMTP_PORT=str(port))
        env.update(NEWSLETTER_SMTP_HOST=host, NEWSLETTER_SMTP_PORT=str(port))
        reset_settings()
        samples = sample_messages(issue_id, min(200, args.subscribers))
        result["avg_message_kb"] = round(sum(map(len, samples)) / len(samples) / 1024, 1)
        raw_rate, raw_sent, raw_cpu = raw_smtp_rate(host, port, samples, args.workers, args.raw_seconds)
        own_rate, _, own_cpu = raw_smtp_rate(host, port, samples, args.workers, args.raw_seconds, "ours")
        result["raw_smtp_per_s"] = round(raw_rate, 1)  # smtplib: the baseline of rounds 1 and 2
        result["raw_cpu_ms_per_msg"] = round(raw_cpu, 3)  # smtplib's own share of a send
        result["raw_own_smtp_per_s"] = round(own_rate, 1)  # the workers' client, same sink
        result["raw_own_cpu_ms_per_msg"] = round(own_cpu, 3)
        log(
            f"raw SMTP: {raw_rate:.0f} msg/s with smtplib, {own_rate:.0f} msg/s with ours, over "
            f"{args.workers} connection(s), {result['avg_message_kb']} KB messages",
            quiet,
        )

        # the workers, on a private Redis database and queue
        broker, _claim = private_redis_db()
        cleanup.append(lambda: flush_redis(broker))
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        env["NEWSLETTER_BROKER_URL"] = broker
        os.environ["NEWSLETTER_BROKER_URL"] = broker
        reset_settings()
        from newsletter.worker import publisher

        celery_app = publisher(get_settings())
        celery_app.conf.task_default_queue = queue
        worker_env = dict(os.environ.items())
        worker_env["PYTHONPATH"] = str(ROOT)
        workers = Workers(
            worker_env,
            args.workers,
            queue,
            tmp / "worker.log",
            app="benchmarks.naive_app" if args.naive else "workers",
        )
        cleanup.append(workers.stop)
        workers.wait_ready()
        log(f"{args.workers} worker process(es) ready; sending", quiet)

        sink_before = sink.count(settle=0.2) if sink else None
        sampler = Sampler(workers)
        profiler = (
            start_profiler(workers.proc.pid, Path(args.profile), args.profile_idle) if args.profile else None
        )
        commits_before = pg_commits()
        cpu_before = cpu_seconds(workers.proc.pid)
        host_before = host_cpu()
        sampler.start()
        from newsletter.delivery import dispatch_issue

        t0 = time.time()
        batches = dispatch_issue(get_settings(), issue_id)
        deadline = time.monotonic() + args.timeout
        # Counting open rows costs PostgreSQL more as N grows (at 200,000 rows, every 0.25 s, a
        # third of a core that the workers lost). The sink's own count is free: ask the ledger
        # every 5 s until the sink has them all, then every 0.25 s.
        asked = 0.0
        while time.monotonic() < deadline:
            if sink is None or sink.received - sink_before >= planned or time.monotonic() - asked >= 5:
                asked = time.monotonic()
                if not open_rows(issue_id):
                    break
            time.sleep(0.25)
        cpu_after = cpu_seconds(workers.proc.pid)
        host_after = host_cpu()
        sampler.stop()
        profile_summary = stop_profiler(profiler, Path(args.profile)) if profiler else None
        ledger = ledger_figures(issue_id)
        sent = ledger["states"].get("sent", 0)
        commits = settled_commits(commits_before, at_least=sent)
        elapsed = (ledger["last_sent"] or time.time()) - t0
        received = sink.count() - sink_before if sink else None
        rate = sent / elapsed if elapsed > 0 else 0.0
        result.update(
            {
                "sent": sent,
                "digests_per_s": round(rate, 1),
                "ratio": round(rate / raw_rate, 3) if raw_rate else None,  # against smtplib
                "ratio_own": round(rate / own_rate, 3) if own_rate else None,  # against ours
                # the database's commits during the send (all of them: the workers' claims and
                # "sent" rows, and this script's polling, ~4/s), per second of the send
                "pg_commits_per_s": round(commits / elapsed, 1) if elapsed > 0 else None,
                "ledger_table_mb": ledger_size_mb(),
                "send_s": round(elapsed, 2),
                "cpu_ms_per_digest": round(1000 * (cpu_after - cpu_before) / max(sent, 1), 2),
                # how busy the whole machine was while sending (other people's work included)
                "host_cpu_busy": round(
                    (host_after[0] - host_before[0]) / max(host_after[1] - host_before[1], 1), 2
                ),
                "peak_worker_rss_mb": round(sampler.peak_child, 1),
                "worker_main_rss_mb": round(sampler.peak_main, 1),
                "sink_received": received,
                "dup": max(received - sent, 0) if received is not None else None,
                "unconfirmed_250": max(sent - received, 0) if received is not None else None,
                "lost": ledger["lost"],
                "retried_rows": ledger["retried"],
                "states": ledger["states"],
                "batches": batches,
                "batch_size": batch_size or get_settings().batch_size,
                "raw_sent": raw_sent,
            }
        )
        if profile_summary:
            result["profile"] = str(args.profile)
            log(profile_summary, quiet)
        return result
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: {exc!r}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, required=True)
    p.add_argument("--workers", type=int, default=2, help="worker processes = SMTP connections")
    p.add_argument("--smtp-host")
    p.add_argument("--smtp-port", type=int, default=25)
    p.add_argument("--dkim", action="store_true", help="sign with a fresh RSA-2048 key")
    p.add_argument("--naive", action="store_true", help="premailer per recipient and one task per recipient")
    p.add_argument("--plan-only", action="store_true")
    p.add_argument(
        "--unique-interests",
        action="store_true",
        help="no two readers share interests (no ranking is reused)",
    )
    p.add_argument(
        "--async-commit",
        action="store_true",
        help="what-if: synchronous_commit=off on the throwaway database",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="deliveries per task (default: the setting NEWSLETTER_BATCH_SIZE)",
    )
    p.add_argument("--raw-seconds", type=float, default=5.0)
    p.add_argument(
        "--relay-rtt-ms",
        type=float,
        default=0.0,
        help="a round trip of this many ms to the sink (a delay proxy)",
    )
    p.add_argument("--papers", type=Path, help="paper feed (default: shared trending papers)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--profile", help="py-spy the workers during the send into this file")
    p.add_argument(
        "--profile-idle", action="store_true", help="profile wall-clock time (waits included), not CPU time"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.relay_rtt_ms and args.smtp_host:
        p.error("--relay-rtt-ms puts a delay in front of the benchmark's own sink: not with --smtp-host")
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
