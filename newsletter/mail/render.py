"""Render an email folder (subject, text, HTML) and inline its CSS."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from premailer import Premailer

from newsletter.config import Settings
from newsletter.templating import html_env, text_env


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def inline_css(html: str) -> str:
    """Move <style> rules into style attributes (premailer); keep @media rules in <head>.

    premailer costs ~15 ms a call, so the digest path calls this once per issue, not per
    recipient (see newsletter.digests).
    """
    return Premailer(
        html,
        allow_network=False,
        keep_style_tags=False,
        remove_classes=False,
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def render_subject(settings: Settings, name: str, context: dict[str, Any]) -> str:
    subject = text_env(settings).get_template(f"email/{name}/subject.txt").render(context)
    return " ".join(subject.split())  # one line, whatever the template did


def render_email(
    settings: Settings, name: str, context: dict[str, Any], *, inline: bool = True
) -> RenderedEmail:
    """Render templates/email/<name>/ (or the operator's copy, NEWSLETTER_TEMPLATES_DIR) with one
    context and the settings' branding; HTML autoescaped and CSS-inlined."""
    html = html_env(settings).get_template(f"email/{name}/body.html").render(context)
    text = text_env(settings).get_template(f"email/{name}/body.txt").render(context)
    return RenderedEmail(
        subject=render_subject(settings, name, context),
        text=text.strip() + "\n",
        html=inline_css(html) if inline else html,
    )
