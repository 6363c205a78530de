"""Domain names that can never carry mail on the public Internet, and why.

RFC 2606 and RFC 6761 reserve `example.com/.net/.org`, `.example`, `.test`, `.invalid` and
`localhost`; RFC 6762 `.local`; RFC 7686 `.onion`; RFC 8375 `home.arpa` (email-validator's list
holds most of these). An IP literal or a name without a dot is no sending domain either.
"""

from __future__ import annotations

import ipaddress
from email.utils import parseaddr
from functools import lru_cache
from urllib.parse import urlsplit

from email_validator import SPECIAL_USE_DOMAIN_NAMES

RESERVED_TLDS = {*SPECIAL_USE_DOMAIN_NAMES, "example", "localhost"}
DOCUMENTATION_DOMAINS = ("example.com", "example.net", "example.org")


def undeliverable(domain: str) -> str | None:
    """Why mail using `domain` can never be delivered (a phrase to follow "which"), or None."""
    name = domain.strip().rstrip(".").lower()
    if not name:
        return "is empty"
    if name.startswith("[") or _is_ip(name):
        return "is an IP address, not a domain name"
    tld = name.rsplit(".", 1)[-1]
    if tld in RESERVED_TLDS:
        where = f"is {tld}" if name == tld else f"ends in .{tld}"
        return f"{where}, a special-use name that never reaches the Internet (RFC 6761)"
    for reserved in DOCUMENTATION_DOMAINS:
        if name == reserved or name.endswith("." + reserved):
            return f"is under {reserved}, reserved for documentation (RFC 2606)"
    if "." not in name:
        return "is a single-label name (no dot), which no other mail server can resolve"
    return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=16)
def mail_domain(mail_from: str) -> str:
    """The domain of the From address, as ASCII (`ascii_domain`): for the Message-ID, the VERP
    addresses and the mailto: unsubscribe. Remembered: a digest asks three times, ~25 µs each."""
    return ascii_domain((parseaddr(mail_from)[1] or mail_from).rsplit("@", 1)[-1].strip(" >"))


def ascii_domain(domain: str) -> str:
    """An internationalised domain in its IDNA form (bücher.de → xn--bcher-kva.de), which every
    header and SMTP command can carry: as it was, every email of a list sending from such a
    domain failed to build (UnicodeEncodeError on its Message-ID). Any other name as it is."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid name: the settings check says so
        return domain


def check_base_url(url: str) -> str:
    """The site's public address, which every link is built on: http(s), a host, maybe a port
    and a path, nothing else. A query or fragment (`https://lab.org?utm_source=x`) landed in the
    middle of every link, List-Unsubscribe's too; a space or a user part broke them all."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or "?" in url
        or "#" in url
        or "@" in parts.netloc
        or any(ch.isspace() for ch in url)
    ):
        raise ValueError(
            f"{url!r} is not a site address: use http(s)://host[:port][/path], with no query, "
            "fragment, user or spaces, such as https://news.example.org"
        )
    return url


def check_logo_url(value: str | None) -> str | None:
    """The logo: an https:// image URL (pages admit its origin in their CSP), or none."""
    if not value:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname or any(ch in value for ch in " \"'<>\r\n"):
        raise ValueError(f"NEWSLETTER_LOGO_URL must be an https:// URL of an image, not {value!r}")
    return value.strip()
