"""The README's production section, followed as written in a fresh clone (tests/production.py says
what stands in for the Debian host), then the runbook's commands (docs/operations.md) on it.

One host is brought up per module: install, database, `newsletter init`, the systemd units (web,
worker, beat), nginx with TLS, Postfix as the relay. A reader signs up over HTTPS, confirms from
the email's link and gets a digest sent with `newsletter send --now`, all through Postfix.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from newsletter.testing import create_pg_database, drop_pg_database, free_port
from tests.conftest import ROOT, Mailbox, html_part, link_in, own_redis_db, text_part
from tests.production import TEST_DOMAIN, Host, commands, marked_blocks

pytestmark = pytest.mark.integration
README = ROOT / "README.md"
RUNBOOK = ROOT / "docs/operations.md"
RUNBOOK_STEPS = ["first-start", "dkim", "upgrade", "backup", "restore", "rotate", "monitor"]
UNITS = ("newsletter-web", "newsletter-worker", "newsletter-beat", "newsletter-inbound")
STEPS = ["install", "database", "configure", "start", "nginx", "postfix", "check", "send"]


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "a private Postfix instance needs root (run by .ci/run, which runs as root)"
    for tool in ("nginx", "postfix", "postconf", "openssl", "curl", "git"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            return f"{tool} is not installed (scripts/system-deps.sh installs it)"
    if not Path("/etc/postfix/master.cf").exists():
        return "Postfix's master.cf is missing (apt-get install postfix)"
    return None


@pytest.fixture(scope="module")
def mailbox():
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def host(mailbox):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    import redis

    # Not under pytest's tmp folder (mode 0700): Postfix's daemons, running as `postfix`, must
    # reach their data and queue folders.
    root = Path(tempfile.mkdtemp(prefix="newsletter-host-"))
    root.chmod(0o755)
    clone = root / "src"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    on_branch = subprocess.run(["git", "-C", str(clone), "symbolic-ref", "-q", "HEAD"], capture_output=True)
    if on_branch.returncode:  # the checkout under test is at a detached commit: the runbook's
        # `git pull` needs a branch that follows the origin's HEAD, as an operator's clone has
        for args in (
            ["checkout", "-q", "-b", "under-test"],
            ["config", "branch.under-test.remote", "origin"],
        ):
            subprocess.run(["git", "-C", str(clone), *args], check=True)
        subprocess.run(["git", "-C", str(clone), "config", "branch.under-test.merge", "HEAD"], check=True)
    redis_url = own_redis_db(1)
    redis.Redis.from_url(redis_url).flushdb()
    db_url = create_pg_database()
    box, relay_port = mailbox
    machine = Host(root, clone, db_url, redis_url, relay_port)
    machine.prepare_postfix()
    started = time.monotonic()
    try:
        blocks = marked_blocks(README, "production-readme")
        assert list(blocks) == STEPS, "the README's production blocks changed: update STEPS and the rules"
        for step in STEPS[:6]:  # check and send are the tests below
            machine.run_block(blocks[step])
            print(step, round(time.monotonic() - started, 1))
            if step == "start":
                machine.wait_ready()
        machine.timings = {"up": time.monotonic() - started}  # type: ignore[attr-defined]
        yield machine
    finally:
        machine.shutdown()
        redis.Redis.from_url(redis_url).flushdb()
        drop_pg_database(db_url)
        shutil.rmtree(root, ignore_errors=True)


def client(host: Host) -> httpx.Client:
    tls = ssl.create_default_context(cafile=host.cert)
    return httpx.Client(base_url=host.base_url, verify=tls, timeout=20)


def wait_mail(box: Mailbox, to: str, subject: str, count: int = 1) -> email.message.EmailMessage:
    found = box.wait_for(count, to=to, subject=subject, timeout=30)
    assert len(found) >= count, [str(m["Subject"]) for m in box.parsed(to)]
    return found[-1]


def https_unsubscribe(msg: email.message.EmailMessage) -> str:
    """The https URI of List-Unsubscribe (a mailto: one may follow it)."""
    return re.match(r"<(https://[^>]+)>", str(msg["List-Unsubscribe"]))[1]


def test_the_installed_configuration_is_what_the_readme_promises(host):
    env = host.env_file.read_text()
    assert (host.env_file.stat().st_mode & 0o777) == 0o640
    assert env.count("NEWSLETTER_SECRET_KEY=") == 1 and 'NEWSLETTER_MODE="production"' in env
    assert f"digest@{TEST_DOMAIN}" in env and "NEWSLETTER_METRICS_TOKEN=" in env
    # Each unit names the env file; each service says at start which file it read.
    for name in UNITS:
        unit = host.unit(name)
        assert unit["User"] == ["newsletter"] and unit["Restart"] == ["on-failure"], name
        assert "NEWSLETTER_ENV_FILE=/etc/newsletter/newsletter.env" in unit["Environment"], name
        assert host.units[name].poll() is None, host.tail(name)
        loaded = [line for line in host.tail(name).splitlines() if '"config_loaded"' in line]
        assert loaded and str(host.env_file) in loaded[0], host.tail(name)
    web = host.unit("newsletter-web")
    assert "FORWARDED_ALLOW_IPS=127.0.0.1" in web["Environment"]
    assert "--host 127.0.0.1 --port 8000" in web["ExecStart"][0]
    # `init` made the secret once: running the README's init again refuses and changes nothing.
    init = next(c for c in commands(marked_blocks(README, "production-readme")["configure"]) if " init " in c)
    again = host.sh(host.swap(init), check=False)
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr
    assert host.env_file.read_text() == env


def test_systemd_units_pass_systemd_analyze_verify(host, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    for name in UNITS:
        # The installed paths: the ExecStart programs must exist for `verify`.
        text = (host.root / "etc/systemd/system" / f"{name}.service").read_text()
        unit = tmp_path / f"{name}.service"
        unit.write_text(text.replace("/opt/newsletter", f"{host.root}/opt/newsletter"))
        done = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
        )
        assert done.returncode == 0 and name not in done.stdout + done.stderr, done.stdout + done.stderr


def test_readme_journey_signup_confirm_and_digest_through_nginx_and_postfix(host, mailbox):
    box, _ = mailbox
    blocks = marked_blocks(README, "production-readme")
    healthz, dry_run = host.run_block(blocks["check"])
    assert json.loads(healthz.stdout)["status"] == "ok"
    assert "Dry run" in dry_run.stdout, dry_run.stdout

    reader = "reader@example.net"
    with client(host) as web:
        r = web.post("/subscribe", data={"email": reader, "interests": "diffusion models for video"},
                     headers={"X-Forwarded-For": "198.51.100.7"})  # fmt: skip
        assert r.status_code == 202, r.text
        confirm = wait_mail(box, reader, "onfirm")
        assert f"by {TEST_DOMAIN} (Postfix)" in str(confirm["Received"])  # it went through the relay
        link = link_in(confirm, "confirm")
        assert link.startswith(f"{host.base_url}/confirm/")
        assert web.get(link).status_code == 200  # a page with a button; GET changes nothing
        assert web.post(link).status_code == 200
        wait_mail(box, reader, "elcome")

    started = time.monotonic()
    [send] = host.run_block(blocks["send"])
    assert "Sent 1" in send.stdout, send.stdout
    digest = wait_mail(box, reader, "Paper Digest,")
    host.timings["send"] = time.monotonic() - started
    assert digest.get_content_type() == "multipart/alternative"
    assert digest["Message-ID"] and digest["Date"] and TEST_DOMAIN in str(digest["From"])
    assert str(digest["List-Unsubscribe"]).startswith(f"<{host.base_url}/unsubscribe/")
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert TEST_DOMAIN in str(digest["List-Id"])
    assert 'style="' in html_part(digest) and "Example Town" in text_part(digest)
    assert f"{host.base_url}/preferences/" in text_part(digest)

    # One-click unsubscribe, as a mail client does it, through nginx.
    unsubscribe = https_unsubscribe(digest)
    with client(host) as web:
        r = web.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    exported = host.sh(f"{host.root}/opt/newsletter/bin/newsletter subscribers export {reader}").stdout
    person = json.loads(exported)
    assert person["status"] == "unsubscribed"
    # nginx replaced the client's X-Forwarded-For: the consent record holds the real address.
    ips = {e.get("ip") for e in person["consent_events"]}
    assert "127.0.0.1" in ips and "198.51.100.7" not in ips
    print("production README:", {k: round(v, 1) for k, v in host.timings.items()})


def test_readme_postfix_hands_a_bounce_to_the_inbound_unit_and_the_reader_is_bounced(host, mailbox):
    """A reader's server refuses a message Postfix already accepted: Postfix's bounce goes to the
    VERP address, its transport map hands it to newsletter-inbound, and the reader is bounced."""
    box, _ = mailbox
    reader = "gone@example.net"
    with client(host) as web:
        assert web.post("/subscribe", data={"email": reader, "interests": "robots"}).status_code == 202
        confirm = link_in(wait_mail(box, reader, "onfirm"), "confirm")
        # From now on the reader's server refuses: the welcome email bounces at Postfix.
        box.replies[reader] = "550 5.1.1 <gone@example.net>: Recipient address rejected: no such user"
        assert web.post(confirm).status_code == 200
    deadline = time.monotonic() + 30
    while json.loads(newsletter(host, f"subscribers export {reader}"))["status"] != "bounced":
        assert time.monotonic() < deadline, (
            host.tail("newsletter-inbound") + host.log("postfix").read_text()[-3000:]
        )
        time.sleep(0.5)
    assert f"bounces.{TEST_DOMAIN}" in host.log("postfix").read_text()  # the DSN went to the endpoint
    assert '"bounce.recorded"' in host.tail("newsletter-inbound")


def test_nginx_example_redirects_http_caps_bodies_and_forwards_the_scheme(host):
    plain = httpx.get(f"http://127.0.0.1:{host.http_port}/archive?x=1", follow_redirects=False)
    assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
    assert plain.headers["location"].endswith("/archive?x=1")
    with client(host) as web:
        page = web.get("/")
        assert page.status_code == 200 and f'action="{host.base_url}/subscribe"' in page.text
        assert "max-age" in page.headers["strict-transport-security"]
        # The app's trailing-slash redirect: https on the public host (NEWSLETTER_BASE_URL).
        slash = web.get("/archive/", follow_redirects=False)
        assert slash.status_code in (307, 308), slash.text
        assert slash.headers["location"].startswith(f"{host.base_url}/archive")
        assert web.post("/subscribe", content=b"x" * 100_000).status_code == 413  # nginx, before the app
        # The CSV imports take up to 32 MB, as the app does: nginx refused any over 64 KB (~600
        # rows) with its own 413. Without credentials the app refuses them (and, the body unread,
        # may hang up on nginx: a 502), but never nginx's 413.
        big_csv = b"email\n" + b"".join(b"reader%d@example.org\n" % i for i in range(10_000))
        api = web.post("/api/admin/subscribers/import", content=big_csv, headers={"content-type": "text/csv"})
        page = web.post("/admin/import", files={"file": ("readers.csv", big_csv)}, follow_redirects=False)
        assert 413 not in (api.status_code, page.status_code)
        token = re.search(r"^NEWSLETTER_METRICS_TOKEN=(\S+)$", host.env_file.read_text(), re.M)[1]
        assert web.get("/metrics").status_code == 401
        metrics = web.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert metrics.status_code == 200 and "newsletter_subscribers" in metrics.text
    # An HTTP/1.0 request without Host (load balancers' health checks): nginx passed no Host on,
    # and the app answered 400 "Invalid HTTP request"; $host falls back to server_name.
    tls = ssl.create_default_context(cafile=host.cert)
    raw = socket.create_connection(("127.0.0.1", host.https_port))
    with tls.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 200")


# ---- docs/operations.md, on the same host ------------------------------------------------------


def runbook(step: str) -> str:
    return marked_blocks(RUNBOOK, "operations")[step]


def newsletter(host: Host, args: str) -> str:
    return host.sh(f"{host.root}/opt/newsletter/bin/newsletter {args}").stdout


def test_runbook_blocks_are_the_ones_this_module_runs():
    assert list(marked_blocks(RUNBOOK, "operations")) == RUNBOOK_STEPS


def test_runbook_first_start_checks_web_worker_and_database(host):
    healthz, ping, stats = host.run_block(runbook("first-start"))
    assert json.loads(healthz.stdout)["status"] == "ok"
    assert "pong" in ping.stdout
    assert "Subscribers" in stats.stdout


def test_runbook_dkim_signs_mail_that_verifies_against_the_printed_dns_record(host, mailbox):
    import dkim

    box, _ = mailbox
    results = host.run_block(runbook("dkim"))
    printed = next(r.stdout for r in results if "_domainkey" in r.stdout)
    assert printed.startswith(f"pd1._domainkey.{TEST_DOMAIN}. TXT ")
    record = re.search(r'TXT "(v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+)"', printed)[1]
    assert (host.root / "etc/newsletter/dkim.pem").stat().st_mode & 0o777 == 0o640
    host.wait_ready()
    with client(host) as web:
        assert web.post("/subscribe", data={"email": "signed@example.net"}).status_code == 202
    wait_mail(box, "signed@example.net", "onfirm")
    [raw] = [data for _, rcpts, data in box.messages if "signed@example.net" in rcpts]
    assert b"d=" + TEST_DOMAIN.encode() in raw and b"s=pd1" in raw
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record.encode())
    assert not dkim.verify(
        raw.replace(b"Subject: ", b"Subject: x", 1), dnsfunc=lambda n, timeout=5: record.encode()
    )


def test_runbook_upgrade_migrates_then_restarts_worker_beat_web(host):
    results = host.run_block(runbook("upgrade"))
    assert any("up to date" in r.stdout for r in results), [r.stdout for r in results]
    assert host.started[-4:] == [
        "newsletter-worker",
        "newsletter-beat",
        "newsletter-web",
        "newsletter-inbound",
    ]
    host.wait_ready()
    with client(host) as web:
        assert web.get("/healthz").status_code == 200


def test_runbook_backup_and_restore_keep_readers_and_their_mailed_links(host, mailbox):
    box, _ = mailbox
    [digest] = [m for m in box.parsed("reader@example.net") if "Paper Digest," in str(m["Subject"])]
    unsubscribe = https_unsubscribe(digest)
    before = json.loads(newsletter(host, "subscribers export reader@example.net"))
    host.run_block(runbook("backup"))
    backups = host.root / "var/backups/newsletter"
    [dump] = backups.glob("newsletter-*.dump")
    assert dump.stat().st_size > 10_000 and (backups / "newsletter.env").exists()
    assert (backups / "dkim.pem").read_bytes() == (host.root / "etc/newsletter/dkim.pem").read_bytes()
    # The settings file is damaged after the backup; the restore puts it back.
    host.env_file.write_text(host.env_file.read_text().replace("NEWSLETTER_SECRET_KEY=", "# lost "))

    host.run_block(runbook("restore"))
    host.wait_ready()
    after = json.loads(newsletter(host, "subscribers export reader@example.net"))
    assert after == before
    assert "NEWSLETTER_SECRET_KEY=" in host.env_file.read_text()
    with client(host) as web:
        assert web.get(unsubscribe).status_code == 200  # signed before the backup, still good


def test_runbook_key_rotation_keeps_every_mailed_link_working(host, mailbox):
    box, _ = mailbox
    [digest] = [m for m in box.parsed("reader@example.net") if "Paper Digest," in str(m["Subject"])]
    unsubscribe = https_unsubscribe(digest)

    def key(name: str) -> str:
        return re.search(rf'^{name}="(.*)"$', host.env_file.read_text(), re.M)[1]

    first = key("NEWSLETTER_SECRET_KEY")
    for _ in range(2):  # the second rotation keeps the first key too
        host.run_block(runbook("rotate"), together=True)
    host.wait_ready()
    second, third = key("NEWSLETTER_SECRET_KEY_FALLBACKS").split(",")[0], key("NEWSLETTER_SECRET_KEY")
    assert key("NEWSLETTER_SECRET_KEY_FALLBACKS") == f"{second},{first}"
    assert len({first, second, third}) == 3 and len(third) >= 50
    with client(host) as web:
        assert web.get(unsubscribe).status_code == 200
        forged = unsubscribe[:-4] + ("AAAA" if not unsubscribe.endswith("AAAA") else "BBBB")
        assert web.get(forged).status_code == 400
        # New mail is signed with the new key: a fresh signup's confirmation link works.
        assert web.post("/subscribe", data={"email": "rotated@example.net"}).status_code == 202
        link = link_in(wait_mail(box, "rotated@example.net", "onfirm"), "confirm")
        assert web.post(link).status_code == 200


def test_runbook_monitoring_commands_answer(host):
    healthz, metrics, ping, beat, errors = host.run_block(runbook("monitor"))
    assert json.loads(healthz.stdout)["status"] == "ok"
    assert 'newsletter_subscribers{status="confirmed"}' in metrics.stdout
    assert "pong" in ping.stdout and "beat is ticking" in beat.stdout
    for line in errors.stdout.splitlines():  # every line jq printed is a JSON event
        assert json.loads(line)["level"] in ("error", "warning")
