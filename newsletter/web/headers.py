"""The security headers of every answer, and the Content-Security-Policy of each kind of page.

`SecurityHeaders` (middleware.py) adds `fixed_headers` to every response. A page sets its own
policy first (`page_policy` for our pages, `view_policy` for the digest shown in the browser)
and the middleware leaves that one alone.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from urllib.parse import urlsplit

from jinja2 import Environment

from newsletter.config import Settings
from newsletter.templating import html_env

DEFAULT_PORTS = {"http": 80, "https": 443}
# JSON, plain text and anything else that is not one of our pages: nothing may load or run.
BASE_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, as a browser's Origin header spells it (default port
    left out, lower case); the text itself, lower-cased, when it is not an absolute URL (`null`)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return url.strip().lower()
    if not parts.scheme or not parts.hostname:
        return url.strip().lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown = "" if port is None or port == DEFAULT_PORTS.get(parts.scheme) else f":{port}"
    return f"{parts.scheme.lower()}://{host}{shown}"


def fixed_headers(settings: Settings) -> list[tuple[str, str]]:
    """What every response carries unless it set the header itself."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        # No Referer to other sites (view-in-browser links carry tokens). Not no-referrer: with it
        # a browser sends `Origin: null` on our own form posts, which the signup check refuses.
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        # Pages show addresses, interests and links that act for a reader: no cache keeps them.
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", BASE_POLICY),
    ]
    if settings.base_url.startswith("https://"):
        headers.append(("Strict-Transport-Security", "max-age=63072000"))
    return headers


def inline_hash(settings: Settings, name: str) -> str:
    """The CSP source of the inline element whose whole text is `templates/web/<name>`
    (the pages include these files between their tags, nothing else), as the settings'
    templates and branding render it."""
    return _inline_hash(html_env(settings), name)


@lru_cache
def _inline_hash(env: Environment, name: str) -> str:
    text = env.get_template(f"web/{name}").render()
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def page_policy(settings: Settings) -> str:
    """Our own pages: the stylesheet in base.html and the signup form's scripts (proof of work,
    time zone), each admitted by its hash (so the same page is the same bytes for everyone);
    forms post to this site only (NEWSLETTER_BASE_URL, which every form action names)."""
    scripts = " ".join(inline_hash(settings, name) for name in ("proof_script.html", "timezone_script.html"))
    logo = f"img-src {origin_of(settings.logo_url)}; " if settings.logo_url else ""
    return (
        f"default-src 'none'; style-src {inline_hash(settings, 'page.css')}; script-src {scripts}; {logo}"
        f"form-action 'self' {origin_of(settings.base_url)}; frame-ancestors 'none'; base-uri 'none'"
    )


def view_policy(settings: Settings) -> str:
    """The digest as a page: the email's inline styles, and images only from the thumbnail hosts
    (NEWSLETTER_THUMBNAIL_HOSTS), so a paper's link to any other server loads nothing."""
    logo = [origin_of(settings.logo_url)] if settings.logo_url else []
    images = " ".join([f"https://{host}" for host in settings.thumbnail_hosts] + logo) or "'none'"
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src {images}; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )


def admin_policy(settings: Settings) -> str:
    """The admin pages: their two stylesheets by hash, no script at all, the logo's origin for
    images (NEWSLETTER_LOGO_URL), and frames from this site only (the preview's digest,
    `framed_view_policy`)."""
    styles = f"{inline_hash(settings, 'page.css')} {inline_hash(settings, 'admin/admin.css')}"
    logo = f"img-src {origin_of(settings.logo_url)}; " if settings.logo_url else ""
    return (
        f"default-src 'none'; style-src {styles}; {logo}frame-src 'self'; "
        f"form-action 'self' {origin_of(settings.base_url)}; frame-ancestors 'none'; base-uri 'none'"
    )


def framed_view_policy(settings: Settings) -> str:
    """The digest inside the admin preview: `view_policy`, framed by this site only, and
    sandboxed (no script, no form, its own opaque origin) whatever the papers hold."""
    return view_policy(settings).replace("frame-ancestors 'none'", "frame-ancestors 'self'") + "; sandbox"
