"""`newsletter inbound serve`: the SMTP/LMTP endpoint for bounces, complaints and mailto: unsubscribes."""

from __future__ import annotations

import logging

import typer

from newsletter.cli.common import console
from newsletter.config import get_settings
from newsletter.envfile import find_env_file
from newsletter.errors import OperatorError
from newsletter.logs import event, setup_process_logging

log = logging.getLogger("newsletter.bounces")

inbound_app = typer.Typer(
    help="The inbound mail endpoint (bounces, complaints, unsubscribes).", no_args_is_help=True
)


@inbound_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(2525, min=1, max=65535, help="Port to listen on."),
    lmtp: bool = typer.Option(False, "--lmtp", help="Speak LMTP instead of SMTP."),
) -> None:
    """Take mail for the bounce domain (NEWSLETTER_BOUNCE_DOMAIN, default the mail domain).

    Point the MTA's transport for that domain here, e.g. in Postfix's transport map:
    bounces.example.org  smtp:[127.0.0.1]:2525

    Example: newsletter inbound serve --host 0.0.0.0 --port 2525
    """
    from newsletter.bounces.inbound import serve as run_inbound

    settings = get_settings()
    setup_process_logging(settings.log_level)  # every line JSON, aiosmtpd's too
    event(log, "config_loaded", path=str(find_env_file() or ""), mode=settings.mode)
    protocol = "LMTP" if lmtp else "SMTP"
    if settings.mode == "production":
        event(log, "inbound.listening", domain=settings.verp_domain, host=host, port=port, protocol=protocol)
    else:
        console.print(f"Taking mail for [bold]{settings.verp_domain}[/] on {host}:{port} ({protocol}).")
    try:
        run_inbound(settings, host, port, lmtp)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise OperatorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
