"""Configuration as an operator meets it: `newsletter init`, where settings are read, what
production refuses, and one clear line (never a traceback) for every bad setting."""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import pty
import re
import shlex
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dotenv import dotenv_values

from newsletter.config import SECRET_MIN_LENGTH, ConfigError, Settings, settings_from
from tests.conftest import PRODUCTION_IDENTITY

BIN = Path(sys.executable).parent
INIT = [
    "init",
    "--base-url",
    "https://papers.yourlab.org",
    "--from-address",
    "Paper Digest <digest@papers.yourlab.org>",
    "--postal-address",
    'Example Labs, 1 "Main" St #4, Springfield \\ back',
]


def run(args: list[str], cwd: Path, program: str = "newsletter", **env: str) -> subprocess.CompletedProcess:
    """An installed command, run from `cwd` with only the NEWSLETTER_* variables in `env`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    environment.update(env)
    return subprocess.run(
        [str(BIN / program), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def systemd_environment_file(text: str) -> dict[str, str]:
    """How systemd's EnvironmentFile= reads a file (src/basic/env-file.c): `#`/`;` comments,
    KEY=VALUE, and in double quotes a backslash keeps the next of `"\\`$` (others stay)."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip()[0] in "#;":
            continue
        key, sep, raw = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()), line
        raw = raw.strip()
        if raw.startswith('"'):
            assert raw.endswith('"') and len(raw) >= 2, line
            raw, value, i = raw[1:-1], "", 0
            while i < len(raw):
                if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in '"\\`$':
                    value, i = value + raw[i + 1], i + 2
                else:
                    value, i = value + raw[i], i + 1
        else:
            value = raw
        values[key.strip()] = value
    return values


# ---- newsletter init ------------------------------------------------------------------------


def test_init_writes_the_production_file_once_and_every_reader_agrees(tmp_path):
    path = tmp_path / "etc" / "newsletter" / "newsletter.env"
    done = run([*INIT, "--env-file", str(path)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(path) in done.stdout and "newsletter db upgrade" in done.stdout
    assert f"NEWSLETTER_ENV_FILE={path}" in done.stdout  # not the system location: say how to find it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    by_systemd, by_dotenv = systemd_environment_file(text), dotenv_values(path)
    assert by_systemd == by_dotenv
    assert by_dotenv["NEWSLETTER_POSTAL_ADDRESS"] == 'Example Labs, 1 "Main" St #4, Springfield \\ back'
    assert by_dotenv["NEWSLETTER_MAIL_FROM"] == "Paper Digest <digest@papers.yourlab.org>"
    assert by_dotenv["NEWSLETTER_LIST_ID"] == "Paper Digest <digest.papers.yourlab.org>"
    secret = by_dotenv["NEWSLETTER_SECRET_KEY"]
    assert len(secret) >= SECRET_MIN_LENGTH
    settings = Settings(_env_file=path)  # production, and its own checks pass
    assert settings.mode == "production" and settings.secret_key == secret
    # The hints, uncommented as an operator does, read alike: a comment after a value was part
    # of the value for systemd ("smtp.yourlab.org# unset: mail is only written to …")
    filled = re.sub(r"^# (NEWSLETTER_)", r"\1", text, flags=re.M)
    by_systemd, by_dotenv = systemd_environment_file(filled), dotenv_values(stream=io.StringIO(filled))
    assert by_systemd == by_dotenv and by_systemd["NEWSLETTER_SMTP_HOST"] == "smtp.yourlab.org"
    assert f"Environment=NEWSLETTER_ENV_FILE={path}" in done.stdout  # as the shipped units say it

    again = run([*INIT, "--env-file", str(path)], cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and path.read_text() == text
    forced = run([*INIT, "--env-file", str(path), "--force"], cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert dotenv_values(path)["NEWSLETTER_SECRET_KEY"] != secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_checks_like_production_start_up_and_writes_nothing_on_error(tmp_path):
    path = tmp_path / "conf" / "newsletter.env"
    done = run(
        ["init", "--base-url", "http://papers.yourlab.org", "--from-address", "Digest <digest@localhost>"]
        + ["--postal-address", " ", "--database-url", "not a url"],
        cwd=tmp_path,
        NEWSLETTER_ENV_FILE=str(path),  # the default target
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    for setting in ("NEWSLETTER_DATABASE_URL",):
        assert any(setting in line for line in lines), lines
    assert not path.exists() and not path.parent.exists()
    done = run(
        ["init", "--base-url", "http://papers.yourlab.org", "--from-address", "Digest <digest@localhost>"]
        + ["--postal-address", " "],
        cwd=tmp_path,
        NEWSLETTER_ENV_FILE=str(path),
    )
    lines = done.stderr.strip().splitlines()
    named = {"NEWSLETTER_BASE_URL", "NEWSLETTER_MAIL_FROM", "NEWSLETTER_LIST_ID", "NEWSLETTER_POSTAL_ADDRESS"}
    assert {name for name in named for line in lines if name in line} == named, lines
    assert done.returncode == 1 and not path.exists()
    dollar = run([*INIT[:-1], "costs $5"], cwd=tmp_path, NEWSLETTER_ENV_FILE=str(path))
    assert dollar.returncode == 1 and "NEWSLETTER_POSTAL_ADDRESS" in dollar.stderr and not path.exists()
    done = run(INIT, cwd=tmp_path, NEWSLETTER_ENV_FILE=str(path))  # the values fixed: written there
    assert done.returncode == 0 and path.exists(), done.stderr


# ---- where settings are read -----------------------------------------------------------------


@pytest.fixture
def env_file(tmp_path) -> Path:
    """A production settings file written by `newsletter init`, naming a SQLite database."""
    path = tmp_path / "conf" / "newsletter.env"
    database = f"sqlite:///{tmp_path / 'data' / 'news.db'}"
    done = run([*INIT, "--env-file", str(path), "--database-url", database], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return path


def test_commands_run_anywhere_with_NEWSLETTER_ENV_FILE(env_file, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    upgrade = run(["db", "upgrade"], cwd=elsewhere, NEWSLETTER_ENV_FILE=str(env_file))
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "data" / "news.db").exists() and "up to date" in upgrade.stdout
    added = run(
        ["subscribers", "add", "ada@yourlab.org", "--confirmed"],
        cwd=elsewhere,
        NEWSLETTER_ENV_FILE=str(env_file),
    )
    assert added.returncode == 0, added.stderr
    stats = run(["stats", "--json"], cwd=elsewhere, NEWSLETTER_ENV_FILE=str(env_file))
    assert stats.returncode == 0 and '"confirmed": 1' in stats.stdout, stats.stderr
    # A real environment variable wins over the file.
    other = run(
        ["stats"],
        cwd=elsewhere,
        NEWSLETTER_ENV_FILE=str(env_file),
        NEWSLETTER_DATABASE_URL="sqlite:///:memory:",
    )
    assert other.returncode == 1 and "newsletter db upgrade" in other.stderr
    # Without the variable, a ./.env in the working folder is read.
    (elsewhere / ".env").write_text(env_file.read_text() + "NEWSLETTER_SMTP_HOTS=typo\n")
    local = run(["stats", "--json"], cwd=elsewhere)
    assert '"confirmed": 1' in local.stdout
    [warning] = [json.loads(line) for line in local.stderr.splitlines()]  # a misspelt setting is named
    assert warning["event"] == "config_unknown_setting" and warning["names"] == ["NEWSLETTER_SMTP_HOTS"]


def test_no_settings_file_found_says_so_not_just_that_the_secret_is_missing(tmp_path):
    done = run(["stats"], cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    first = done.stderr.splitlines()[0]
    assert (
        "No settings file was read" in first and "NEWSLETTER_ENV_FILE" in first and "newsletter init" in first
    )


def test_a_person_at_a_terminal_is_told_which_file_was_read(env_file, tmp_path):
    """On a terminal the CLI names the file on stderr; piped, stdout stays clean JSON."""
    main, other = pty.openpty()
    command = f"{shlex.quote(str(BIN / 'newsletter'))} db upgrade"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_ENV_FILE=str(env_file), NO_COLOR="1")
    proc = subprocess.Popen(shlex.split(command), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=other)
    os.close(other)
    out, _ = proc.communicate(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.returncode == 0
    assert f"Settings: {env_file} ($NEWSLETTER_ENV_FILE)" in " ".join(seen.decode().split())
    assert b"Settings:" not in out


# ---- what production refuses ----------------------------------------------------------------

STRONG = "Xq0dJm3-kR9wZ2v_Lp8sT4yB7nC1fH6gA5eU0iO3rE9tY2uWx7-Jn4"


def production(**values: str | bool) -> Settings:
    base = {"mode": "production", "secret_key": STRONG, "base_url": "https://papers.yourlab.org"}
    return settings_from(**{**base, **PRODUCTION_IDENTITY, **values})


@pytest.mark.parametrize(
    "url",
    [
        "https://papers.yourlab.org?utm_source=x",
        "https://papers.yourlab.org/#top",
        "https:// papers.yourlab.org",
    ]
    + [
        "https://user@papers.yourlab.org",
        "papers.yourlab.org",
        "ftp://papers.yourlab.org",
        "https://x.org:80a",
    ],
)
@pytest.mark.parametrize("mode", ["production", "dev"])
def test_a_base_url_that_would_break_every_link_is_refused_in_every_mode(url, mode):
    """It only had to start with https://: `?utm_source=x` ended up inside every link
    (List-Unsubscribe: <https://papers.yourlab.org?utm_source=x/unsubscribe/…>)."""
    with pytest.raises(ConfigError) as refused:
        production(base_url=url, mode=mode)
    assert str(refused.value).startswith("NEWSLETTER_BASE_URL")
    assert production(base_url="https://papers.yourlab.org/digest", mode=mode).base_url.endswith("/digest")


@pytest.mark.parametrize(
    "domain",
    ["localhost", "mail.localhost", "lab.local", "digest.test", "x.invalid", "lab.example", "example.com"]
    + ["news.example.org", "example.net", "127.0.0.1", "[10.0.0.1]", "mailhost"],
)
def test_production_refuses_a_sender_domain_that_cannot_exist(domain):
    with pytest.raises(ConfigError) as refused:
        production(mail_from=f"Digest <digest@{domain}>")
    [line] = str(refused.value).splitlines()
    assert line.startswith("NEWSLETTER_MAIL_FROM") and domain.strip("[]") in line
    with pytest.raises(ConfigError, match="^NEWSLETTER_LIST_ID"):
        production(
            list_id=f"Digest <digest.{domain}>" if "." in domain and domain[-1].isalpha() else f"<{domain}>"
        )
    with pytest.raises(ConfigError, match="^NEWSLETTER_DKIM_DOMAIN"):
        production(dkim_domain=domain)
    with pytest.raises(ConfigError, match="^NEWSLETTER_BOUNCE_DOMAIN"):
        production(bounce_domain=domain)


def test_production_wants_a_postal_address_unless_waived_and_other_modes_keep_defaults():
    with pytest.raises(ConfigError, match="^NEWSLETTER_POSTAL_ADDRESS.*NEWSLETTER_POSTAL_ADDRESS_WAIVED"):
        production(postal_address="  ")
    assert production(postal_address="", postal_address_waived=True).postal_address == ""
    assert production().mail_domain == "papers.yourlab.org"
    for mode in ("dev", "demo", "test"):
        assert settings_from(mode=mode).mail_from == "Paper Digest <digest@localhost>"


def test_tls_is_one_kind_or_the_other():
    assert settings_from(mode="dev", smtp_tls="true").smtp_tls
    assert settings_from(mode="dev", smtp_starttls="true").smtp_starttls
    with pytest.raises(ConfigError) as refused:
        settings_from(mode="dev", smtp_tls="true", smtp_starttls="true")
    [line] = str(refused.value).splitlines()
    assert line.startswith("NEWSLETTER_SMTP_STARTTLS: ") and "NEWSLETTER_SMTP_TLS (port 465)" in line


def test_every_problem_is_one_line_naming_its_setting():
    with pytest.raises(ConfigError) as refused:
        settings_from(mode="production", smtp_port="twenty-five", digest_hour="25", secret_key="x")
    lines = str(refused.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["NEWSLETTER_SMTP_PORT", "NEWSLETTER_DIGEST_HOUR"]
    assert "'twenty-five'" in lines[0] and "23" in lines[1]
    with pytest.raises(ConfigError) as refused:
        settings_from(mode="production", secret_key="x")
    names = [line.split()[0] for line in str(refused.value).splitlines()]
    assert names == [
        "NEWSLETTER_SECRET_KEY",
        "NEWSLETTER_MAIL_FROM",
        "NEWSLETTER_LIST_ID",
        "NEWSLETTER_POSTAL_ADDRESS",
        "NEWSLETTER_BASE_URL",
    ]


# ---- no tracebacks -----------------------------------------------------------------------------

START_UP = [
    ("newsletter", ["stats"]),
    ("newsletter", ["serve", "--port", "1"]),
    ("celery", ["-A", "workers", "worker"]),
    ("celery", ["-A", "workers", "beat"]),
]


@pytest.mark.parametrize("program,args", START_UP, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_bad_settings_stop_every_process_with_a_line_not_a_traceback(tmp_path, program, args):
    folder = tmp_path / "outside-the-repo"
    folder.mkdir()
    garbled = tmp_path / "garbled.env"
    garbled.write_text('NEWSLETTER_MODE="dev"\nthis line is not a setting\n')
    latin1 = tmp_path / "latin1.env"
    latin1.write_bytes(b"NEWSLETTER_POSTAL_ADDRESS=Stra\xdfe 1\n")
    bad_values = tmp_path / "bad-values.env"
    bad_values.write_text(
        "NEWSLETTER_MODE=dev\nNEWSLETTER_SMTP_PORT=smtp\nNEWSLETTER_TIMEZONE=Mars/Olympus\n"
    )
    cases = [
        (str(tmp_path / "missing.env"), ["does not exist"]),
        (str(tmp_path), ["not a file"]),  # a folder
        (str(garbled), [f"{garbled}, line 2: not a KEY=VALUE line"]),
        (str(latin1), ["not UTF-8"]),
        (str(bad_values), ["NEWSLETTER_SMTP_PORT: Input should be a valid integer", "NEWSLETTER_TIMEZONE"]),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:  # five interpreter start-ups at once, not in turn
        runs = list(pool.map(lambda case: run(args, folder, program, NEWSLETTER_ENV_FILE=case[0]), cases))
    for (_path, expected), done in zip(cases, runs, strict=True):
        output = done.stderr + done.stdout
        assert done.returncode in (1, 2) and "Traceback" not in output, output
        lines = done.stderr.strip().splitlines()
        assert len(lines) == len(expected), output
        for line, words in zip(lines, expected, strict=True):
            assert line.startswith("Error: ") and words in line, (line, words)


# ---- the postal address in every footer ----------------------------------------------------

POSTAL = "Example Labs & Co, <1 Main St>, Springfield"


def test_every_email_shows_the_postal_address_in_html_and_text(configure, sqlite_url, smtp_server):
    """CAN-SPAM: the digest and every journey email carry the address in both parts, escaped
    in HTML like any other value."""
    from newsletter import admin
    from newsletter.mail.transactional import transactional_message
    from newsletter.models import Subscriber, SubscriberStatus
    from newsletter.papers import sample_feed_path
    from tests.conftest import html_part, text_part

    box, port = smtp_server
    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_POSTAL_ADDRESS=POSTAL,
    )
    admin.ingest(settings, path=sample_feed_path())
    admin.add_subscriber(settings, "ada@yourlab.org", "robots", "weekly", 5, confirmed=True)
    admin.add_subscriber(settings, "bob@yourlab.org", "", "weekly", 5, confirmed=False)  # a confirm email
    admin.send_now(settings, "weekly")
    messages = box.parsed()
    ada = Subscriber(
        id=1, email="ada@yourlab.org", email_key="ada@yourlab.org", status=SubscriberStatus.confirmed
    )
    for kind in ("welcome", "already_subscribed"):
        messages.append(
            email.message_from_bytes(transactional_message(settings, kind, ada), policy=email.policy.default)
        )
    kinds = {("List-Id" in m, m["Subject"]) for m in messages}
    assert len(messages) == 4 and sum(is_digest for is_digest, _ in kinds) == 1, kinds
    escaped = "Example Labs &amp; Co, &lt;1 Main St&gt;, Springfield"
    for message in messages:
        assert POSTAL in text_part(message), message["Subject"]
        assert escaped in html_part(message) and "<1 Main St>" not in html_part(message), message["Subject"]


def test_a_dkim_key_that_cannot_sign_is_refused_at_start_not_at_the_first_send(tmp_path):
    """A missing key file (a typo, a missed chgrp) started fine and `check` said Ready; every
    confirmation and digest then failed with "FileNotFoundError", naming neither file nor setting.
    A selector without a key sent unsigned mail without a word."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def pem(key) -> Path:
        path = tmp_path / f"{type(key).__name__}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return path

    good = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    (tmp_path / "garbage.pem").write_text("not a key")
    for path, why in [
        (tmp_path / "missing.pem", "cannot read the DKIM key"),
        (tmp_path / "garbage.pem", "not a PEM private key"),
        (pem(ec.generate_private_key(ec.SECP256R1())), "not an RSA key"),
    ]:
        with pytest.raises(ConfigError) as refused:
            settings_from(mode="dev", dkim_selector="pd1", dkim_private_key_path=str(path))
        assert str(refused.value).startswith("NEWSLETTER_DKIM_PRIVATE_KEY_PATH") and why in str(refused.value)
    for alone in ({"dkim_selector": "pd1"}, {"dkim_private_key_path": str(good)}):
        with pytest.raises(
            ConfigError, match="NEWSLETTER_DKIM_SELECTOR and NEWSLETTER_DKIM_PRIVATE_KEY_PATH"
        ):
            settings_from(mode="dev", **alone)
    assert (
        settings_from(mode="dev", dkim_selector="pd1", dkim_private_key_path=str(good)).dkim_private_key_path
        == good
    )


def test_a_working_folder_that_cannot_be_read_is_no_settings_file_there(tmp_path, monkeypatch):
    """Run as the service user from root's home (mode 0700), `Path(".env").is_file()` raised
    PermissionError: every command ended in "Permission denied: '.env'" and the system file was
    never tried. (Root reads any folder, so the refusal is made here the way the OS makes it.)"""
    from pathlib import Path as RealPath

    from newsletter import envfile

    system = tmp_path / "newsletter.env"
    system.write_text("NEWSLETTER_MODE=dev\n")
    real_is_file = RealPath.is_file

    def is_file(path: RealPath) -> bool:
        if path == envfile.LOCAL_ENV_FILE:
            raise PermissionError(13, "Permission denied", ".env")
        return real_is_file(path)

    monkeypatch.delenv("NEWSLETTER_ENV_FILE", raising=False)
    monkeypatch.setattr(envfile, "SYSTEM_ENV_FILE", system)
    monkeypatch.setattr(RealPath, "is_file", is_file)
    assert envfile.find_env_file() == system
