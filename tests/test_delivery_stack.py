"""Issue delivery on real parts: PostgreSQL, Redis, a Celery worker, SMTP, uvicorn, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import create_engine, text

from newsletter.papers import sample_feed_path
from tests.conftest import ROOT, text_part

pytestmark = pytest.mark.integration

READERS = {
    "llm@example.org": ("large language models and agents using tools", "language model"),
    "med@example.org": ("medical image segmentation", "segment"),
    "robot@example.org": ("robot learning, reinforcement learning for control", "reinforcement learning"),
}


def newsletter(stack, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def sql(stack, query: str, **params):
    engine = create_engine(stack.db_url)
    with engine.begin() as conn:
        result = conn.execute(text(query), params)
        rows = result.all() if result.returns_rows else []
    engine.dispose()
    return rows


def digests(stack, to=None):
    return [m for m in stack.mailbox.parsed(to) if "List-Id" in m]


def test_weekly_issue_through_celery(stack, configure):
    newsletter(stack, "papers", "ingest", str(sample_feed_path()))
    for address, (interests, _) in READERS.items():
        newsletter(stack, "subscribers", "add", address, "--interests", interests, "--confirmed")
    newsletter(stack, "subscribers", "add", "pending@example.org", "--interests", "x")
    newsletter(stack, "subscribers", "add", "gone@example.org", "--confirmed")
    newsletter(stack, "subscribers", "remove", "gone@example.org")
    late = "late@example.org"
    newsletter(stack, "subscribers", "add", late, "--interests", "diffusion", "--confirmed")

    # Plan first, then the late reader leaves, then the workers send: they must re-check.
    from newsletter.ledger import plan_issue
    from newsletter.testing import configured_session

    configure(NEWSLETTER_DATABASE_URL=stack.db_url)
    with configured_session() as session:
        issue, planned = plan_issue(session)
    assert planned == 4
    sql(stack, "UPDATE subscriber SET status = 'unsubscribed' WHERE email_key = :k", k=late)

    result = json.loads(newsletter(stack, "send", "--now", "--json"))
    assert result["issue_id"] == issue.id and result["counts"]["sent"] == 3
    assert result["counts"]["skipped"] == 1
    for address, (_, topic) in READERS.items():
        [msg] = digests(stack, address)
        titles = re.findall(r"^\d+\. (.+)$", text_part(msg), flags=re.M)
        assert any(topic in t.lower() for t in titles[:2]), (address, titles[:3])
    for nobody in ("pending@example.org", "gone@example.org", late):
        assert digests(stack, nobody) == []

    again = json.loads(newsletter(stack, "send", "--now", "--json"))
    assert again["planned"] == 0 and len(digests(stack)) == 3

    # One-click unsubscribe straight from the digest's header.
    [msg] = digests(stack, "med@example.org")
    url = msg["List-Unsubscribe"].split(",")[0].strip(" <>")
    local = stack.web.url + "/" + url.split("/", 3)[3]
    r = httpx.post(
        local,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert sql(stack, "SELECT status FROM subscriber WHERE email_key = 'med@example.org'") == [
        ("unsubscribed",)
    ]

    # View in browser shows the same papers the reader got.
    [msg] = digests(stack, "robot@example.org")
    view = re.search(r"https://\S+/issues/\d+/view/\S+", text_part(msg)).group(0)
    page = httpx.get(stack.web.url + "/" + view.split("/", 3)[3])
    first = re.findall(r"^\d+\. (.+)$", text_part(msg), flags=re.M)[0]
    import html as html_lib

    assert page.status_code == 200 and first in html_lib.unescape(page.text)
    archive = httpx.get(stack.web.url + "/archive")
    assert archive.status_code == 200 and f"/archive/{issue.id}" in archive.text
