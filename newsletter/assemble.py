"""Each reader's digest from parts made once per issue: HTML assembled by position, plain text.

The HTML is rendered and CSS-inlined once per issue with slot markers where per-reader values
go (`newsletter.digests` does that), then cut at the markers into literal segments and slot
names. A reader's HTML is the segments joined with their escaped values: text from a feed
(titles, abstracts, links) is copied as it is and never searched for markers, so a paper that
spells a marker gets it printed, never a reader's address or links.

A marker carries a nonce drawn for that one render, after the papers are known, and refused if
any paper's text contains it; the nonce is never sent out. Escaping and premailer cannot build
one out of other text either: entities and %-escapes put `&`, `#`, `;`, `%` or a letter past
`f` between any hex digits they write, and the nonce is one unbroken run of 32.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from secrets import token_hex

from jinja2 import Environment, Template, pass_environment
from jinja2.filters import do_wordwrap
from markupsafe import escape

SHELL_SLOTS = frozenset({"email", "intro", "view_url", "preferences_url", "unsubscribe_url"})
CARD_SLOTS = frozenset({"why", "more_url", "less_url"})


@dataclass(frozen=True)
class SlotMarker:
    """Writes and finds `PDSLOT<nonce>name<nonce>` markers for one render."""

    nonce: str

    def __call__(self, name: str) -> str:
        return f"PDSLOT{self.nonce}{name}{self.nonce}"

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(f"PDSLOT{self.nonce}([a-z_]+?){self.nonce}")


def new_marker(untrusted: Iterable[str]) -> SlotMarker:
    """A marker whose nonce occurs in none of `untrusted` (drawn again if it does)."""
    texts = list(untrusted)
    nonce = token_hex(16)
    while any(nonce in text for text in texts):  # never in practice: a guarantee, not a bet
        nonce = token_hex(16)
    return SlotMarker(nonce)


@dataclass(frozen=True)
class Segments:
    """Literal HTML with named slots between: parts[0], slot, parts[2], slot, …, parts[-1]."""

    parts: tuple[str, ...]

    @classmethod
    def cut(cls, html: str, marker: SlotMarker, allowed: frozenset[str]) -> Segments:
        parts = tuple(marker.pattern.split(html))
        unknown = set(parts[1::2]) - allowed
        if unknown:
            raise ValueError(f"the digest template has unknown slots: {sorted(unknown)}")
        return cls(parts)

    def fill(self, values: Mapping[str, str]) -> str:
        """The HTML with `values` (already safe HTML) at the slots, and nothing else changed."""
        parts = list(self.parts)
        parts[1::2] = [values[name] for name in self.parts[1::2]]
        return "".join(parts)


def escaped(values: Mapping[str, str]) -> dict[str, str]:
    return {name: str(escape(value)) for name, value in values.items()}


def _fragments(html: str, marker: SlotMarker, kind: str, key: str) -> tuple[str, dict[str, str]]:
    """`html` without the fragments between `<!--marker(kind) key-->` and `<!--/marker(kind)-->`,
    and those fragments by key."""
    start, end = re.escape(f"<!--{marker(kind)} "), re.escape(f"<!--/{marker(kind)}-->")
    pattern = re.compile(rf"{start}({key})-->(.*?){end}\n?", re.S)
    found = dict(pattern.findall(html))
    return pattern.sub("", html), found


@dataclass(frozen=True)
class IssueTemplate:
    """The digest HTML, inlined once, cut into a shell, one fragment per paper and the section
    headings a reader's digest may have (placed by `assemble`)."""

    shell: Segments
    cards: dict[int, Segments]
    sections: dict[str, str] = field(default_factory=dict)

    @classmethod
    def cut(cls, html: str, marker: SlotMarker) -> IssueTemplate:
        """Cut a page rendered with `marker("card")` comments around each card (`<!--… id-->`,
        `<!--/…-->`), `marker("section")` comments around each heading (`<!--… name-->`) and
        `marker(name)` at each slot."""
        html, sections = _fragments(html, marker, "section", "[a-z_]+")
        start, end = f"<!--{marker('card')} ", f"<!--/{marker('card')}-->"
        card_re = re.compile(rf"{re.escape(start)}(\d+)-->(.*?){re.escape(end)}", re.S)
        cards = {int(pid): Segments.cut(body, marker, CARD_SLOTS) for pid, body in card_re.findall(html)}
        first, last = html.find(start), html.rfind(end)
        if first < 0:  # an issue with no papers
            first = last = html.find("</table>", html.find('class="papers"'))
            end = ""
        shell = html[:first] + marker("cards") + html[last + len(end) :]
        return cls(shell=Segments.cut(shell, marker, SHELL_SLOTS | {"cards"}), cards=cards, sections=sections)

    def assemble(
        self,
        cards: Iterable[tuple[int, Mapping[str, str]]],
        values: Mapping[str, str],
        headings: Mapping[int, str] = {},  # noqa: B006 (read only)
    ) -> str:
        """One reader's HTML: the cards of (paper id, card values), in order, in the shell, with
        the section heading `headings[i]` before the i-th card. Values are plain text; they are
        escaped here."""
        parts = []
        for i, (pid, card) in enumerate(cards):
            if i in headings:
                parts.append(self.sections[headings[i]])
            parts.append(self.cards[pid].fill(escaped(card)))
        return self.shell.fill({**escaped(values), "cards": "\n".join(parts)})


# ---- plain text -----------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _wrapped(env, text_: str, args: tuple, kwargs: tuple) -> str:
    return do_wordwrap(env, text_, *args, **dict(kwargs))


@pass_environment
def _wordwrap_once(env, text_: str, *args, **kwargs) -> str:
    """Jinja's wordwrap, remembered: a paper's abstract is wrapped once, not once per reader."""
    return _wrapped(env, text_, args, tuple(kwargs.items()))


@lru_cache(maxsize=4)
def text_template(base: Environment) -> Template:
    """The digest's plain-text template of `base` (`templating.text_env(settings)`), in an
    overlay whose wordwrap filter is remembered."""
    env = base.overlay(cache_size=10)
    env.filters = {**env.filters, "wordwrap": _wordwrap_once}
    return env.get_template("email/digest/body.txt")
