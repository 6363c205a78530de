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
from functools import cached_property, lru_cache
from secrets import token_hex
from types import MappingProxyType

from jinja2 import Environment, Template, pass_environment
from jinja2.filters import do_wordwrap
from markupsafe import escape

from newsletter.mail.qp import NEWLINE, Literal, Pieces, pieces_text

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

    @cached_property
    def literals(self) -> tuple[Literal, ...]:
        """The literal parts, quoted-printable-encoded once (`newsletter.mail.qp`)."""
        return tuple(Literal(part) for part in self.parts[::2])

    def pieces(self, values: Mapping[str, str | Pieces]) -> Pieces:
        """The literals with `values` (a string, or pieces; already safe HTML in HTML) at the
        slots, and nothing else changed."""
        out: Pieces = []
        for literal, name in zip(self.literals, self.parts[1::2], strict=False):
            out.append(literal)
            value = values[name]
            if type(value) is str:
                out.append(value)
            else:
                out += value
        out.append(self.literals[-1])
        return out


def escaped(values: Mapping[str, str]) -> dict[str, str]:
    return {name: str(escape(value)) for name, value in values.items()}


def _fragments(html: str, marker: SlotMarker, kind: str, key: str) -> tuple[str, dict[str, str]]:
    """`html` without the fragments between `<!--marker(kind) key-->` and `<!--/marker(kind)-->`,
    and those fragments by key."""
    start, end = re.escape(f"<!--{marker(kind)} "), re.escape(f"<!--/{marker(kind)}-->")
    pattern = re.compile(rf"{start}({key})-->(.*?){end}\n?", re.S)
    found = dict(pattern.findall(html))
    return pattern.sub("", html), found


Cards = Iterable[tuple[int, Mapping[str, str]]]  # (paper id, its card's values), in order
Headings = Mapping[int, str]  # {index of the first card under it: section name}
NO_HEADINGS: Headings = MappingProxyType({})


class Assembler:
    """A message part made once per issue, filled in per reader (`pieces`, which
    `newsletter.mail.qp.qp_pieces` encodes, or `assemble` for the text)."""

    def pieces(self, cards: Cards, values: Mapping[str, str], headings: Headings = NO_HEADINGS) -> Pieces:
        raise NotImplementedError

    def assemble(self, cards: Cards, values: Mapping[str, str], headings: Headings = NO_HEADINGS) -> str:
        return pieces_text(self.pieces(cards, values, headings))


@dataclass(frozen=True)
class IssueTemplate(Assembler):
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

    def pieces(self, cards: Cards, values: Mapping[str, str], headings: Headings = NO_HEADINGS) -> Pieces:
        """One reader's HTML: the cards of (paper id, card values), in order, in the shell, with
        the section heading `headings[i]` before the i-th card. Values are plain text; they are
        escaped here."""
        parts: Pieces = []  # the headings and cards, a line break between each two
        for i, (pid, card) in enumerate(cards):
            if i in headings:
                parts += (self.section_literals[headings[i]], NEWLINE)
            parts += self.cards[pid].pieces(escaped(card))
            parts.append(NEWLINE)
        return self.shell.pieces({**escaped(values), "cards": parts[:-1]})

    @cached_property
    def section_literals(self) -> dict[str, Literal]:
        return {name: Literal(html) for name, html in self.sections.items()}


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


TEXT_CARD_SLOTS = frozenset({"why_line", "more_url", "less_url"})


@dataclass(frozen=True)
class TextIssueTemplate(Assembler):
    """The digest's plain text, rendered once per issue (abstracts wrapped once), cut into a
    head, one fragment per paper (without its "N. " number), the section headings and a tail."""

    head: Segments
    cards: dict[int, Segments]
    tail: Segments
    why_indent: str
    headings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def cut(
        cls, text_: str, marker: SlotMarker, paper_ids: list[int], headed: Mapping[str, str]
    ) -> TextIssueTemplate:
        """Cut a render of every paper in `paper_ids` order, with no headings and `marker(name)`
        at each slot; `headed` is, by section name, a render of the first paper alone under
        that heading. The pieces are found by position: after the view link, card k starts
        with "\\nk. " and ends after its less-like-this link's line."""
        why = re.search(rf"\n([ \t]*){re.escape(marker('why'))}\n", text_)
        indent = why.group(1) if why else ""
        text_ = text_.replace(f"\n{indent}{marker('why')}\n", f"\n{marker('why_line')}")
        ends = [m.end() for m in re.finditer(re.escape(marker("less_url")) + "\n", text_)]
        if len(ends) != len(paper_ids):
            raise ValueError("the digest text template has an unexpected shape (one less_url per card)")
        start = text_.find("\n1. ", text_.find(marker("view_url"))) if paper_ids else len(text_)
        cards = {}
        for k, (pid, begin, end) in enumerate(zip(paper_ids, [start, *ends], ends, strict=False), 1):
            number = f"\n{k}. "
            if not text_.startswith(number, begin):
                raise ValueError(f"the digest text template has an unexpected shape at card {k}")
            cards[pid] = Segments.cut(text_[begin + len(number) : end], marker, TEXT_CARD_SLOTS)
        head, tail = text_[:start], text_[ends[-1] if ends else len(text_) :]
        headings = {name: page[len(head) : page.find("\n1. ", len(head))] for name, page in headed.items()}
        # The text as it is sent, trimmed here once: no white space before the first line, one
        # line break after the last (a reader's value at either very end is left as it is).
        head, tail = head.lstrip(), (tail.rstrip() + "\n" if ends else "")
        if not ends:
            head = head.rstrip() + "\n"
        return cls(
            head=Segments.cut(head, marker, SHELL_SLOTS),
            cards=cards,
            tail=Segments.cut(tail, marker, SHELL_SLOTS),
            why_indent=indent,
            headings=headings,
        )

    def pieces(self, cards: Cards, values: Mapping[str, str], headings: Headings = NO_HEADINGS) -> Pieces:
        """One reader's plain text, as `IssueTemplate` makes their HTML (values are not escaped),
        and as it is sent: without white space at either end, and one line break at the end."""
        parts = self.head.pieces(values)
        numbers, indent = self.number_literals, self.why_indent
        for i, (pid, card) in enumerate(cards):
            if i in headings:
                parts.append(self.heading_literals[headings[i]])
            why = card["why"]
            line: Pieces = [indent, why, NEWLINE] if why else []
            parts.append(numbers[i] if i < len(numbers) else Literal(f"\n{i + 1}. "))
            parts += self.cards[pid].pieces({**card, "why_line": line})
        return parts + self.tail.pieces(values)

    @cached_property
    def number_literals(self) -> tuple[Literal, ...]:
        """Each card's "\nk. " line start."""
        return tuple(Literal(f"\n{k}. ") for k in range(1, len(self.cards) + 1))

    @cached_property
    def heading_literals(self) -> dict[str, Literal]:
        return {name: Literal(text_) for name, text_ in self.headings.items()}
