"""Domain names that can never carry mail on the public Internet, and why.

RFC 2606 and RFC 6761 reserve `example.com/.net/.org`, `.example`, `.test`, `.invalid` and
`localhost`; RFC 6762 `.local`; RFC 7686 `.onion`; RFC 8375 `home.arpa` (email-validator's list
holds most of these). An IP literal or a name without a dot is no sending domain either.
"""

from __future__ import annotations

import ipaddress

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
