"""The web app over a real network: `newsletter serve` and uvicorn as processes, attacked with
raw HTTP and read from the outside (their memory, their log, how long they take to answer).
"""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from tests.conftest import WebServer, migrated_sqlite, process_env
from tests.faultkit import FaultySMTP, SMTPServer

pytestmark = pytest.mark.integration


# ---- a signup takes as long with or without an email to send --------------------------------


def test_signup_answer_takes_as_long_whether_or_not_an_email_is_due(tmp_path):
    """Without a broker the confirmation used to be sent inside the request, so a second signup
    of an address inside its cooldown answered faster than a new one (13 vs 29 ms; here the
    relay takes 0.4 s, to make it plain). Now in-process jobs run after the answer has gone out:
    both answers are quick and alike, and every confirmation still arrives."""
    relay = SMTPServer(FaultySMTP()).start()
    relay.handler.data_delay = 0.4
    env = process_env(
        NEWSLETTER_DATABASE_URL=migrated_sqlite(tmp_path),
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(relay.port),
        NEWSLETTER_SIGNUP_RATE_PER_IP="1000",
    )
    web = WebServer(env, tmp_path / "web.log")
    new, again = [], []
    try:
        with httpx.Client(base_url=web.url, timeout=30) as c:
            c.get("/")
            for i in range(8):
                for times in (new, again):
                    began = time.perf_counter()
                    assert c.post("/subscribe", data={"email": f"t{i}@example.org"}).status_code == 202
                    times.append(time.perf_counter() - began)
        deadline = time.monotonic() + 30
        while relay.handler.total() < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        web.stop()
        relay.stop()
    medians = statistics.median(new) * 1000, statistics.median(again) * 1000
    print(f"median answer: new address {medians[0]:.1f} ms, inside the cooldown {medians[1]:.1f} ms")
    assert relay.handler.total() == 8
    assert medians[0] < 200 and abs(medians[0] - medians[1]) < 100, medians
