"""`newsletter init`: write the production settings file once, with a freshly generated secret."""

from __future__ import annotations

import os
import secrets
from email.utils import parseaddr
from pathlib import Path

import typer
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from newsletter.cli.common import console
from newsletter.config import settings_from
from newsletter.envfile import ENV_FILE_VARIABLE, SYSTEM_ENV_FILE, env_file_text, quote, write_private_file
from newsletter.errors import ConfigError

HEADER = """Paper Digest settings, written by `newsletter init`. Every process reads this file:
`newsletter`, `newsletter serve`, `celery -A workers worker|beat` (set NEWSLETTER_ENV_FILE to
its path unless it is /etc/newsletter/newsletter.env), and the systemd units in deploy/systemd/
(Environment=NEWSLETTER_ENV_FILE=<this file>).
Back it up with the database: without NEWSLETTER_SECRET_KEY every link already mailed breaks.
One KEY="VALUE" per line; inside quotes write \\" and \\\\; no $ or backquote."""

HINTS = """
# Optional (README, "Configuration"): uncomment and fill in. Explanations stand on lines of their
# own: a comment after a value is part of the value for systemd's EnvironmentFile=.
# Unset, mail is only written to NEWSLETTER_OUTBOX_DIR:
# NEWSLETTER_SMTP_HOST="smtp.yourlab.org"
# NEWSLETTER_SMTP_PORT="587"
# Or, on port 465, NEWSLETTER_SMTP_TLS="true" instead:
# NEWSLETTER_SMTP_STARTTLS="true"
# NEWSLETTER_SMTP_USERNAME="digest"
# NEWSLETTER_SMTP_PASSWORD="..."
# Make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
# NEWSLETTER_METRICS_TOKEN="..."
# NEWSLETTER_WEBHOOK_SECRET="..."
# NEWSLETTER_PAPER_SOURCE="huggingface"
"""


def default_env_file() -> Path:
    """$NEWSLETTER_ENV_FILE if set, else the system location."""
    explicit = os.environ.get(ENV_FILE_VARIABLE, "").strip()
    return Path(explicit).expanduser() if explicit else SYSTEM_ENV_FILE


def init(
    base_url: str = typer.Option(
        ..., help="Public https URL of the web app, e.g. https://papers.yourlab.org"
    ),
    from_address: str = typer.Option(
        ..., help='From header, e.g. "Paper Digest <digest@papers.yourlab.org>" (a domain you send from).'
    ),
    postal_address: str = typer.Option(
        ..., help="Your physical postal address, shown in every email footer."
    ),
    database_url: str | None = typer.Option(
        None, help="e.g. postgresql+psycopg://newsletter@127.0.0.1/newsletter"
    ),
    broker_url: str | None = typer.Option(None, help="e.g. redis://127.0.0.1:6379/0"),
    env_file: Path | None = typer.Option(
        None, help=f"Where to write; default ${ENV_FILE_VARIABLE}, else {SYSTEM_ENV_FILE}."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing file (a new secret breaks old links)."
    ),
) -> None:
    """Write the production settings file ONCE, with a freshly generated secret key.

    The values are checked as production start-up checks them; nothing is written on an error.
    The file gets mode 0600; an existing one is kept unless --force.

    Example: newsletter init --base-url https://papers.yourlab.org
    --from-address "Paper Digest <digest@papers.yourlab.org>"
    --postal-address "Example Labs, 1 Main St, Springfield"
    """
    path = (env_file or default_env_file()).absolute()
    values = production_values(base_url, from_address, postal_address, database_url, broker_url)
    text = env_file_text(values, HEADER, HINTS)  # refuses a value no settings file can hold
    write_private_file(path, text, force=force)
    console.print(f"Wrote [bold]{escape(str(path))}[/] (mode 0600). Keep it secret, and back it up.")
    for line in next_steps(path):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def production_values(
    base_url: str, from_address: str, postal: str, database_url: str | None, broker_url: str | None
) -> dict[str, str]:
    """The settings to write, checked with production's own rules (ConfigError if any fails)."""
    values = {
        "NEWSLETTER_MODE": "production",
        "NEWSLETTER_SECRET_KEY": secrets.token_urlsafe(48),
        "NEWSLETTER_BASE_URL": base_url.strip().rstrip("/"),
        "NEWSLETTER_MAIL_FROM": from_address.strip(),
        "NEWSLETTER_LIST_ID": list_id_for(from_address),
        "NEWSLETTER_POSTAL_ADDRESS": " ".join(postal.split()),
    }
    if database_url:
        values["NEWSLETTER_DATABASE_URL"] = _checked_database_url(database_url.strip())
    if broker_url:
        values["NEWSLETTER_BROKER_URL"] = broker_url.strip()
    for key, value in values.items():
        quote(key, value)  # before any check that might echo it
    settings_from(**{key.removeprefix("NEWSLETTER_").lower(): value for key, value in values.items()})
    return values


def list_id_for(from_address: str) -> str:
    """RFC 2919 List-Id from the From header: "Paper Digest <digest@lab.org>" gives
    "Paper Digest <digest.lab.org>" (production checks its domain like the From's)."""
    name, address = parseaddr(from_address)
    local, _, domain = address.partition("@")
    return f"{name or 'Paper Digest'} <{local or 'digest'}.{domain or 'invalid'}>"


def _checked_database_url(url: str) -> str:
    try:
        make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            "NEWSLETTER_DATABASE_URL is not a database URL (e.g. postgresql+psycopg://user@host:5432/db)."
        ) from exc
    return url


def next_steps(path: Path) -> list[str]:
    steps = ["Set your SMTP relay in that file (NEWSLETTER_SMTP_HOST, ...: see its commented lines)."]
    if path != SYSTEM_ENV_FILE:  # the one place every process looks without being told
        steps.append(
            f"export {ENV_FILE_VARIABLE}={path}   (systemd units: Environment={ENV_FILE_VARIABLE}={path})"
        )
    steps += [
        "newsletter db upgrade",
        "Start the web app, a worker and beat; each reads the same file:\n"
        "       newsletter serve --host 127.0.0.1 --port 8000   (behind your TLS proxy)\n"
        "       celery -A workers worker --loglevel=INFO\n"
        "       celery -A workers beat --loglevel=INFO",
    ]
    return ["Next steps:", *(f"  {n}. {step}" for n, step in enumerate(steps, 1))]
