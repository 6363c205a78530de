"""Journey emails' HTML, inlined once per process and assembled per reader by position.

premailer costs ~6.6 ms per journey email, more than everything else in sending one. Each
template (confirm, welcome, already subscribed) is rendered once with slot markers
(`newsletter.assemble`) in place of the context's values, inlined, and cut at the markers; a
reader's HTML is the literal parts joined with their values, escaped the way premailer's
serialiser (lxml) writes text and attributes, so the result is the same bytes a plain render +
premailer gives (tests/test_journey_html.py).

Templates branch on their values only by truthiness (`interests or "…"`), so an empty value is
rendered as itself, not as a slot, and the cache keeps one cut template per kind and set of
empty values.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from jinja2 import Environment

from newsletter.assemble import SlotMarker, new_marker
from newsletter.config import Settings
from newsletter.mail.render import RenderedEmail, inline_css, render_subject
from newsletter.templating import html_env, text_env

# libxml2's HTML serialiser %-escapes these attributes' values, keeping what it keeps here.
URI_ATTRIBUTES = frozenset({"href", "src", "action"})
URI_SAFE = "@/:=?;#%&,+<>!~*'()"
_ATTRIBUTE = re.compile(r"([\w:-]+)\s*=\s*[\"']?[^\"'<>]*$")


def _text(value: str) -> str:
    # As the HTML parser reads it: line ends become \n, NUL the replacement character.
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return html.escape(value, quote=False)


def _attribute(value: str) -> str:
    return _text(value).replace('"', "&quot;")


def _uri(value: str) -> str:
    return _attribute(value if value[:1].isspace() else quote(value, safe=URI_SAFE))


Escape = Callable[[str], str]


@dataclass(frozen=True)
class JourneyTemplate:
    """Literal HTML with slots between: parts[0], slot 0, parts[1], …; each slot a context
    name and how a value is escaped where it stands."""

    parts: tuple[str, ...]
    slots: tuple[tuple[str, Escape], ...]

    @classmethod
    def cut(cls, page: str, marker: SlotMarker) -> JourneyTemplate:
        parts, slots, last = [], [], 0
        for found in marker.pattern.finditer(page):
            parts.append(page[last : found.start()])
            slots.append((found.group(1), _escape_at(page, found.start())))
            last = found.end()
        parts.append(page[last:])
        return cls(tuple(parts), tuple(slots))

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self.parts[0]]
        for (name, escape), part in zip(self.slots, self.parts[1:], strict=True):
            out += (escape(values[name]), part)
        return "".join(out)


def _escape_at(page: str, at: int) -> Escape:
    """How a value at `at` is written: inside a tag it is an attribute's value."""
    tag = page.rfind("<", 0, at)
    if tag <= page.rfind(">", 0, at):
        return _text
    attribute = _ATTRIBUTE.search(page, tag, at)
    return _uri if attribute and attribute.group(1).lower() in URI_ATTRIBUTES else _attribute


@lru_cache(maxsize=64)
def journey_template(
    env: Environment, kind: str, empty: tuple[tuple[str, Any], ...], names: tuple[str, ...]
) -> JourneyTemplate:
    """<kind>/body.html of `env` (`templating.html_env(settings)`: one object per templates folder
    and branding) rendered with a marker for each of `names` (the `empty` ones as their own
    value), inlined and cut; once per process per shape."""
    marker = new_marker(())  # the template is ours; readers' values are never searched
    context = {name: marker(name) for name in names} | dict(empty)
    page = inline_css(env.get_template(f"email/{kind}/body.html").render(context))
    return JourneyTemplate.cut(page, marker)


def render_journey_email(settings: Settings, kind: str, context: Mapping[str, Any]) -> RenderedEmail:
    """What `render_email(settings, kind, context)` gives (subject, text, inlined HTML), without
    running premailer again for each reader."""
    empty = tuple(sorted((k, v) for k, v in context.items() if not v))
    names = tuple(sorted(k for k, v in context.items() if v))
    template = journey_template(html_env(settings), kind, empty, names)
    text = text_env(settings).get_template(f"email/{kind}/body.txt").render(context)
    return RenderedEmail(
        subject=render_subject(settings, kind, dict(context)),
        text=text.strip() + "\n",
        html=template.fill({name: str(context[name]) for name in names}),
    )
