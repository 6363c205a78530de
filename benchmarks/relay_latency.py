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
  where the server offers PIPELINING, as smtp-sink does (2 round trips);
* `ours-ahead`: the same client as a batch uses it: each message's `.` is followed in the same
  write by the next message's MAIL + RCPT + DATA (`end(then=…)`; 1 round trip).

`predicted` is 1 / (round trips × RTT + the client's time per message at RTT 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from send_throughput import DelayProxy, Sink  # noqa: E402


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


def push_ours(port: int, message: bytes, seconds: float, ahead: bool = False) -> tuple[int, float]:
    """Our client's `send`; with `ahead`, as a batch sends: each `.` followed by the next
    message's envelope (`end(then=…)`)."""
    from newsletter.config import Settings
    from newsletter.mail.smtp import SMTPSender

    settings = Settings(mode="dev", smtp_host="127.0.0.1", smtp_port=port)
    sender, sender_address = SMTPSender(settings), "digest@news.example.org"
    sent, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sender.begin(f"r{sent}@example.org", message, mail_from=sender_address)
        sender.end(then=(f"r{sent + 1}@example.org", sender_address) if ahead else None)
        sent += 1
    elapsed = time.perf_counter() - t0
    sender.close()  # an envelope sent ahead for a message that never comes is dropped, never ended
    return sent, elapsed


CLIENTS = {
    "smtplib": (push_smtplib, 4),
    "ours": (push_ours, 2),
    "ours-ahead": (partial(push_ours, ahead=True), 1),
}


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
    print(f"{'client':12} {'RTT ms':>7} {'trips':>5} {'msg/s':>9} {'predicted':>9}")
    for r in rows:
        pred = f"{r['predicted_per_s']:9.1f}" if r["predicted_per_s"] else f"{'-':>9}"
        print(f"{r['client']:12} {r['rtt_ms']:7.0f} {r['round_trips']:5d} {r['msg_per_s']:9.1f} {pred}")


if __name__ == "__main__":
    main()
