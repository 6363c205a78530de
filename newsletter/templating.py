"""The Jinja environments: one for HTML (autoescaped), one for plain text and subjects.

Each is built once per templates folder and branding (`Branding.of(settings)`): templates are
looked up first in NEWSLETTER_TEMPLATES_DIR, when set, then in the packaged ones (a Jinja
`ChoiceLoader`), so an operator restyles any email or page by putting a file of the same
relative name there (`email/digest/body.html`, `web/base.html`), and `{% extends %}` and
`{% include %}` fall back to the packaged files. Overrides are autoescaped like the packaged
templates: the HTML environment's rule is by file name, not by where the file came from.
Every template sees `brand` (name, accent colour, logo, footer text).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from newsletter.config import Settings


def templates_dir() -> Path:
    """The packaged templates folder, in a checkout or inside an installed package."""
    return Path(str(files("newsletter._templates")))


@dataclass(frozen=True)
class Branding:
    """What the templates show of the list's identity (NEWSLETTER_BRAND_NAME and friends)."""

    name: str
    accent_color: str
    logo_url: str | None
    footer_text: str
    postal_address: str  # the sender's address, in every email's footer (CAN-SPAM); "" if unset

    @classmethod
    def of(cls, settings: Settings) -> Branding:
        return cls(
            settings.brand_name,
            settings.accent_color,
            settings.logo_url,
            settings.footer_text,
            settings.postal_address,
        )


def html_env(settings: Settings) -> Environment:
    """HTML templates, autoescaped (overrides too), with `brand`."""
    return _html_env(settings.templates_dir, Branding.of(settings))


def text_env(settings: Settings) -> Environment:
    """Plain text and subjects, not escaped, with `brand`."""
    return _text_env(settings.templates_dir, Branding.of(settings))


def template_loader(override: Path | None) -> BaseLoader:
    """The operator's folder first (if any), then the packaged templates."""
    packaged = FileSystemLoader(templates_dir())
    return ChoiceLoader([FileSystemLoader(override), packaged]) if override else packaged


@lru_cache
def _html_env(override: Path | None, brand: Branding) -> Environment:
    env = Environment(
        loader=template_loader(override),
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["brand"] = brand
    return env


@lru_cache
def _text_env(override: Path | None, brand: Branding) -> Environment:
    # Plain text is never parsed as HTML, so escaping would only garble it.
    env = Environment(
        loader=template_loader(override),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["brand"] = brand
    return env
