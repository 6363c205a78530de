"""`newsletter demo`: the whole product on the embedded default, in one command.

Everything goes through the real code paths: the web app answers the signups (in-process ASGI
client), confirmation links are read back out of the .eml files in the outbox and POSTed, the
digest is planned and sent by the same functions the workers run.
"""

from __future__ import annotations

import email
import email.policy
import re
import secrets
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from newsletter import admin
from newsletter.config import Settings, settings_from
from newsletter.errors import OperatorError
from newsletter.migrate import upgrade
from newsletter.papers import sample_feed_path
from newsletter.web import create_app

DEMO_READERS = [
    ("ada@example.org", "large language models, reasoning and agents that use tools"),
    ("grace@example.org", "medical imaging and segmentation"),
    ("alan@example.org", "robot learning, reinforcement learning, control"),
    ("hedy@example.org", ""),
]
CONFIRM_RE = re.compile(r"https?://\S+/confirm/[A-Za-z0-9._-]+")


DEFAULT_OUTBOX = Path("var/demo/outbox")
DEFAULT_DATABASE = Path("var/demo/demo.db")
# Written into the outbox folder, naming the database next to it: what an earlier demo made, and
# so what a new one may replace. Anything else that already exists is left alone.
MARKER = ".paper-digest-demo"


def demo_settings(outbox: Path, database: Path) -> Settings:
    """A fresh SQLite file and outbox folder, no services, and a secret of its own.

    Built from values only: the demo never reads the operator's environment or `.env`, so run
    next to a production configuration it still cannot reach that database, broker or relay.
    It replaces only what an earlier demo made (`MARKER`), an empty folder, or its own default
    paths; pointed at anything else that exists it stops before touching anything.
    """
    refuse_foreign(outbox, database)
    for path in (database, outbox):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    outbox.mkdir(parents=True)
    (outbox / MARKER).write_text(f"{database.resolve()}\n", encoding="utf-8")
    return settings_from(
        mode="demo",
        secret_key=secrets.token_urlsafe(32),
        database_url=f"sqlite:///{database}",
        outbox_dir=outbox,
        confirm_cooldown_minutes=0,
    )


def refuse_foreign(outbox: Path, database: Path) -> None:
    """Raise unless every existing path is one the demo may replace (see `demo_settings`)."""
    defaults = (
        outbox.resolve() == DEFAULT_OUTBOX.resolve() and database.resolve() == DEFAULT_DATABASE.resolve()
    )
    marker = outbox / MARKER
    ours_db = marker.is_file() and marker.read_text(encoding="utf-8").strip() == str(database.resolve())
    if (
        outbox.exists()
        and not defaults
        and not marker.is_file()
        and not (outbox.is_dir() and not any(outbox.iterdir()))
    ):
        raise OperatorError(
            f"--outbox {outbox} already exists and was not made by the demo; the demo replaces its"
            " folder, so choose a new path (or delete that one yourself)"
        )
    if database.exists() and not defaults and not ours_db:
        raise OperatorError(
            f"--database {database} already exists and was not made by the demo; the demo replaces"
            " its database, so choose a new path (or delete that one yourself)"
        )


def read_messages(outbox: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(outbox.glob("*.eml"))
    ]


def text_of(msg: email.message.EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain",))
    return body.get_content() if body else ""


def sign_up_readers(client, outbox: Path) -> None:
    """Sign up through the web form, then confirm with the link from each email."""
    for address, interests in DEMO_READERS:
        client.post("/subscribe", data={"email": address, "interests": interests})
    for msg in read_messages(outbox):
        match = CONFIRM_RE.search(text_of(msg))
        if match:
            path = "/" + match.group(0).split("/", 3)[3]
            client.get(path)  # what a link scanner does: shows a page, changes nothing
            client.post(path)


def run_demo(outbox: Path, database: Path, console: Console) -> None:
    import warnings

    with warnings.catch_warnings():  # Starlette nags about its test client's HTTP library
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = demo_settings(outbox, database)
    upgrade(settings.database_url)
    report = admin.ingest(settings, path=sample_feed_path())
    console.print(f"Ingested {report['added']} papers from the bundled sample feed.")
    with TestClient(create_app(settings), base_url=settings.base_url) as client:
        sign_up_readers(client, outbox)
    confirmed = admin.list_subscribers(settings, status="confirmed")
    console.print(f"{len(confirmed)} demo readers signed up and confirmed by email (double opt-in).")
    if len(confirmed) != len(DEMO_READERS):
        raise OperatorError(f"only {len(confirmed)} of {len(DEMO_READERS)} demo readers were confirmed")
    result = admin.send_now(settings, "weekly", show_progress=True)
    sent = result["counts"]["sent"]
    console.print(f"Issue {result['period']}: {sent} digests sent.")
    if sent != len(DEMO_READERS):
        raise OperatorError(f"{sent} of {len(DEMO_READERS)} demo digests were sent")
    show_summary(outbox, console)
    console.print(
        f"\nEvery email is a .eml file in [bold]{outbox.resolve()}[/] (open one in your mail client)."
    )


def show_summary(outbox: Path, console: Console) -> None:
    table = Table("reader", "interests", "papers", "top paper", title="Who got what")
    interests = dict(DEMO_READERS)
    for msg in read_messages(outbox):
        if "List-Id" not in msg:
            continue
        body = text_of(msg)
        titles = re.findall(r"^\d+\. (.+)$", body, flags=re.M)
        to = str(msg["To"])
        table.add_row(
            to,
            interests.get(to) or "(none: trending order)",
            str(len(titles)),
            titles[0][:60] if titles else "-",
        )
    console.print(table)
