"""The research-topic lexicon: phrases in a reader's interests that bring in other phrases.

The entries live in `lexicon.txt` beside this module, a plain text file that people who are not
programmers can edit; its header explains the format. Synonyms bring each other in at
`RankingParams.synonym_weight`; a related term is brought in by its phrase, one way only, at
`RankingParams.related_weight`. Entries are keyed by their stems, so "robots" in a reader's
interests finds the entry for "robot".
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from newsletter.ranking.text import stems

LEXICON_FILE = "lexicon.txt"

Synonyms = tuple[str, ...]  # phrases that name the same thing
Related = tuple[str, tuple[str, ...]]  # a phrase, and the phrases it brings in


@dataclass(frozen=True)
class Expansion:
    name: str  # the lexicon phrase that triggers it, as written
    phrases: tuple[tuple[str, ...], ...]  # what it brings in, as stems
    weight: float
    synonym: bool


@dataclass(frozen=True)
class Lexicon:
    entries: dict[tuple[str, ...], tuple[Expansion, ...]]  # the stems of a phrase → its expansions
    max_words: int  # the longest phrase, in words

    def matches(self, phrase: list[str]) -> Iterator[tuple[int, int, Expansion]]:
        """(start, end, expansion) for every lexicon phrase found in a phrase's stems."""
        for start in range(len(phrase)):
            for end in range(start + 1, min(start + self.max_words, len(phrase)) + 1):
                for expansion in self.entries.get(tuple(phrase[start:end]), ()):
                    yield start, end, expansion


@lru_cache(maxsize=8)
def lexicon(synonym_weight: float, related_weight: float) -> Lexicon:
    """The shipped lexicon with its expansions weighted as given (built once per pair)."""
    synonyms, related = _shipped()
    entries: dict[tuple[str, ...], list[Expansion]] = defaultdict(list)
    for names in synonyms:
        group = [stems(name) for name in names]
        for name, key in zip(names, group, strict=True):
            others = tuple(g for g in group if g != key)
            entries[key].append(Expansion(name, others, synonym_weight, True))
    for left, right in related:
        targets = tuple(stems(name) for name in right)
        entries[stems(left)].append(Expansion(left, targets, related_weight, False))
    return Lexicon({k: tuple(v) for k, v in entries.items()}, max(map(len, entries), default=0))


def parse_lexicon(text: str, source: str = LEXICON_FILE) -> tuple[list[Synonyms], list[Related]]:
    """The synonym lines and the related-term lines of a lexicon file, in file order.

    Raises ValueError naming `source` and the line of an entry that cannot be used: a synonym
    line with a single phrase, or a phrase with no word left once stop words are dropped.
    """
    synonyms: list[Synonyms] = []
    related: list[Related] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        left, colon, right = line.partition(":")
        names = tuple(_phrase(name, where) for name in (right if colon else line).split("|"))
        if colon:
            related.append((_phrase(left, where), names))
        elif len(names) < 2:
            raise ValueError(f"{where}: synonyms need two or more phrases separated by |")
        else:
            synonyms.append(names)
    return synonyms, related


@lru_cache(maxsize=1)
def _shipped() -> tuple[list[Synonyms], list[Related]]:
    text = resources.files("newsletter.ranking").joinpath(LEXICON_FILE).read_text(encoding="utf-8")
    return parse_lexicon(text)


def _phrase(text: str, where: str) -> str:
    phrase = text.strip()
    if not stems(phrase):
        raise ValueError(f"{where}: {phrase!r} has no word to match (empty, or only common words)")
    return phrase


def phrase_keys(phrase: tuple[str, ...], weight: float) -> list[tuple[str, float, bool]]:
    """(term, weight, core): a word at full weight; a phrase mostly by its bigrams, a little by
    its single words (which alone do not count as covering the concept)."""
    if len(phrase) == 1:
        return [(phrase[0], weight, True)]
    pairs = len(phrase) - 1
    return [(f"{a} {b}", weight / pairs, True) for a, b in itertools.pairwise(phrase)] + [
        (s, weight / 2 / len(phrase), False) for s in phrase
    ]
