"""`newsletter admin …`: access to the admin pages (/admin)."""

from __future__ import annotations

import sys

import typer

from newsletter.errors import OperatorError
from newsletter.passwords import WeakPassword, hash_password

admin_app = typer.Typer(help="Access to the admin pages (/admin).", no_args_is_help=True)


@admin_app.command("hash-password")
def hash_password_command(
    stdin: bool = typer.Option(False, "--stdin", help="Read the password from standard input."),
) -> None:
    """Print the Argon2id hash of a password for NEWSLETTER_ADMIN_PASSWORD_HASH.

    Asks twice without echoing (or reads one line with --stdin); prints the hash only.

    Example: newsletter admin hash-password
    """
    try:
        if stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = typer.prompt("Admin password", hide_input=True, confirmation_prompt=True)
        password.encode()  # bytes that were not UTF-8 are read as surrogates (surrogateescape)
        sys.stdout.write(hash_password(password) + "\n")
    except UnicodeError as exc:  # ... or refused as they are read, by a strict decoder
        raise OperatorError("the password is not valid UTF-8 text") from exc
    except WeakPassword as exc:
        raise OperatorError(f"password too short: {exc}") from exc
