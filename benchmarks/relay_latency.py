"""Messages per second over ONE SMTP connection to a relay that is a round trip away.

    python benchmarks/relay_latency.py [--rtt-ms 0 5 20 50] [--seconds 8] [--size-kb 27] [--json]

The capacity model in RESULTS.md says a connection's rate is about
1 / (round trips per message × RTT + the rest). This checks that formula: Postfix's `smtp-sink`
answers 250 to everything, and a small proxy in front of it holds every chunk of bytes for
RTT / 2 in each direction (order kept, like a link with that latency and plenty of bandwidth),
so no `tc` and no root is needed and nothing else on loopback is slowed. Each client pushes
pre-built messages of the digest's size for `--seconds`:

* `smtplib`: the standard library, lock-step (MAIL, RCPT, DATA, body + dot: 4 round trips);
* `ours`: the product's own client (`newsletter/mail/smtp.py`), MAIL + RCPT + DATA in one write
  where the server offers PIPELINING, as smtp-sink does (2 round trips).

`predicted` is 1 / (round trips × RTT + the client's time per message at RTT 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from send_throughput import Sink, free_port  # noqa: E402


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


def message_of(size_kb: float) -> bytes:
    line = b"x" * 76 + b"\r\n"
    body = line * int(size_kb * 1024 / len(line))
    return (
        b"From: digest@news.example.org\r\nTo: reader@example.org\r\nSubject: a digest\r\n"
        b"Message-ID: <x@news.example.org>\r\n\r\n" + body
    )


def push_smtplib(port: int, message: bytes, seconds: float) -> tuple[int, float]:
    import smtplib

    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    smtp.ehlo()
    sent, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        smtp.sendmail("digest@news.example.org", [f"r{sent}@example.org"], message)
        sent += 1
    elapsed = time.perf_counter() - t0
    smtp.quit()
    return sent, elapsed


def push_ours(port: int, message: bytes, seconds: float) -> tuple[int, float]:
    from newsletter.config import Settings
    from newsletter.mail.smtp import SMTPSender

    settings = Settings(mode="dev", smtp_host="127.0.0.1", smtp_port=port)
    sender = SMTPSender(settings)
    sent, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sender.send(f"r{sent}@example.org", message, mail_from="digest@news.example.org")
        sent += 1
    elapsed = time.perf_counter() - t0
    sender.close()
    return sent, elapsed


CLIENTS = {"smtplib": (push_smtplib, 4), "ours": (push_ours, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rtt-ms", type=float, nargs="+", default=[0, 5, 20, 50])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--size-kb", type=float, default=27.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    message = message_of(args.size_kb)
    sink = Sink()
    rows: list[dict] = []
    try:
        base: dict[str, float] = {}
        for rtt in args.rtt_ms:
            proxy = DelayProxy(sink.port, rtt / 2000)
            for name, (push, trips) in CLIENTS.items():
                sent, elapsed = push(proxy.port, message, args.seconds)
                rate = sent / elapsed
                if rtt == 0:
                    base[name] = 1 / rate
                service = base.get(name, 0.0)
                predicted = 1 / (trips * rtt / 1000 + service) if name in base else None
                rows.append(
                    {
                        "client": name,
                        "rtt_ms": rtt,
                        "round_trips": trips,
                        "msg_per_s": round(rate, 1),
                        "predicted_per_s": round(predicted, 1) if predicted else None,
                        "sent": sent,
                    }
                )
    finally:
        sink.stop()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'client':10} {'RTT ms':>7} {'trips':>5} {'msg/s':>9} {'predicted':>9}")
    for r in rows:
        pred = f"{r['predicted_per_s']:9.1f}" if r["predicted_per_s"] else f"{'-':>9}"
        print(f"{r['client']:10} {r['rtt_ms']:7.0f} {r['round_trips']:5d} {r['msg_per_s']:9.1f} {pred}")


if __name__ == "__main__":
    main()
