"""The Jinja environments: one for HTML (autoescaped), one for plain text and subjects."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape


def templates_dir() -> Path:
    """The templates folder, in a checkout or inside an installed package."""
    return Path(str(files("newsletter._templates")))


@lru_cache
def html_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates_dir()),
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@lru_cache
def text_env() -> Environment:
    # Plain text is never parsed as HTML, so escaping would only garble it.
    return Environment(
        loader=FileSystemLoader(templates_dir()),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
