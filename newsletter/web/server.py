"""`newsletter serve`: what is checked before the port is bound, the log level, then uvicorn.

Only the `serve` command imports this module (it brings in uvicorn and, through the package,
FastAPI).
"""

from __future__ import annotations

import ipaddress
import logging
import os

import uvicorn

from newsletter.config import DEV_SECRET, ConfigError, Settings
from newsletter.envfile import find_env_file
from newsletter.logs import event, setup_process_logging, uvicorn_log_config
from newsletter.web.auth import check_secrets

log = logging.getLogger("newsletter.web")


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the app on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_dev_secret_on_network(settings: Settings, host: str, published_on_loopback: bool) -> None:
    """ConfigError when the public development secret would be served beyond this machine:
    anyone who can reach the port could sign links for every subscriber."""
    if settings.secret_key == DEV_SECRET and not is_loopback(host) and not published_on_loopback:
        raise ConfigError(
            f"NEWSLETTER_SECRET_KEY is the public development placeholder, so serving on {host} "
            "would let anyone who can reach it forge links: set NEWSLETTER_SECRET_KEY to a long "
            "random value, or serve on 127.0.0.1."
        )


def serve(
    settings: Settings, host: str, port: int, workers: int, published_on_loopback: bool = False
) -> None:
    """Run the web app under uvicorn, logging at NEWSLETTER_LOG_LEVEL, every line JSON: the
    app's events, one redacted line per request (uvicorn's own access log, which writes link
    tokens, is off) and uvicorn's own lines."""
    refuse_dev_secret_on_network(settings, host, published_on_loopback)
    check_secrets(settings)
    setup_process_logging(settings.log_level)
    event(log, "config_loaded", path=str(find_env_file() or ""), mode=settings.mode)
    if os.environ.get("FORWARDED_ALLOW_IPS", "").strip() == "*":
        event(log, "serve.forwarded_allow_ips_any", logging.WARNING, hint="list the proxy's address instead")
    uvicorn.run(
        "newsletter.web:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        access_log=False,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(settings.log_level),
    )
