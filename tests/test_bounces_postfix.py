"""End to end with a real MTA: the product sends a digest through a private Postfix to a local
domain where some mailboxes do not exist; Postfix accepts everything (250), then itself writes
the DSNs and delivers them, by its transport map, to `newsletter inbound serve` (a real
process). The readers without a mailbox end up bounced, their ledger rows say why, the reader
with a mailbox gets the digest and stays; a mailto: unsubscribe sent through the same Postfix
takes effect.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlmodel import select

from newsletter import admin
from newsletter.bounces.reports import bounce_events_for
from newsletter.models import Delivery, Subscriber, SubscriberStatus
from newsletter.testing import configured_session, free_port, stop_process
from tests.conftest import process_env
from tests.postfix import PrivatePostfix, unavailable
from tests.test_digests import add_subscriber, ingest_sample

KNOWN, UNKNOWN = "ada@readers.test", ("ghost@readers.test", "nobody@readers.test")


@pytest.fixture
def relay(tmp_path, configure, pg_url):
    why = unavailable()
    if why:
        pytest.skip(why)
    inbound_port, smtp_port = free_port(), free_port()
    env = {
        "NEWSLETTER_DATABASE_URL": pg_url,
        "NEWSLETTER_MAIL_FROM": "Paper Digest <digest@news.example.org>",
    }
    settings = configure(**env, NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(smtp_port))
    log = (tmp_path / "inbound.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "inbound", "serve", "--port", str(inbound_port)],
        env=process_env(**env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # Postfix's daemons run as the postfix user: its folders must be reachable for that user,
    # which pytest's private tmp_path is not.
    root = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
    root.chmod(0o755)
    postfix = PrivatePostfix(root, smtp_port, "readers.test", ["ada"], "news.example.org", inbound_port)
    try:
        wait_for_port(inbound_port)
        postfix.start()
        yield type("Relay", (), {"settings": settings, "postfix": postfix, "port": smtp_port})
    finally:
        postfix.stop()
        stop_process(server)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def statuses(ids: dict[str, int]) -> dict[str, SubscriberStatus]:
    with configured_session() as session:
        return {a: session.get(Subscriber, i).status for a, i in ids.items()}


def wait_until(check, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_postfix_bounces_reach_the_inbound_endpoint_and_bounce_the_readers(relay):
    ingest_sample()
    ids = {a: add_subscriber(a, "language models") for a in (KNOWN, *UNKNOWN)}
    result = admin.send_now(relay.settings, "weekly")
    assert result["counts"]["sent"] == 3  # Postfix took all three: the bounces come after the 250
    bounced = wait_until(lambda: all(statuses(ids)[a] is SubscriberStatus.bounced for a in UNKNOWN))
    assert bounced, relay.postfix.log()[-4000:]
    assert statuses(ids)[KNOWN] is SubscriberStatus.confirmed
    [delivered] = relay.postfix.delivered("ada")
    assert "List-Unsubscribe" in delivered.read_text()
    with configured_session() as session:
        for address in UNKNOWN:
            row = session.exec(select(Delivery).where(Delivery.subscriber_id == ids[address])).one()
            assert row.state.value == "sent"
            assert row.error.startswith("bounced after 250: hard 5.1.1 (dsn)"), row.error
            assert "unknown user" in row.error
            [event] = bounce_events_for(session, ids[address])
            assert (event.kind.value, event.source, event.effect) == ("hard", "dsn", "bounced")
        known = session.exec(select(Delivery).where(Delivery.subscriber_id == ids[KNOWN])).one()
        assert known.error is None and bounce_events_for(session, ids[KNOWN]) == []

    # ada uses the mailto: of List-Unsubscribe; her mail goes through the same relay
    mailto = re.search(r"<mailto:([^>]+)>", delivered.read_text().replace("\n\t", " ").replace("\n ", " "))[1]
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=30) as smtp:
        smtp.sendmail(KNOWN, [mailto], b"From: ada@readers.test\r\nSubject: unsubscribe\r\n\r\n")
    assert wait_until(lambda: statuses(ids)[KNOWN] is SubscriberStatus.unsubscribed), relay.postfix.log()[
        -3000:
    ]
