"""Text → index terms: tokenising, stop words and a small Porter stemmer.

Text is split into phrases at punctuation; a phrase is a run of content words (stop words
dropped), each reduced to its stem. `terms` adds a bigram for each pair of neighbouring words
of a phrase ("reinforc learn"), so a bigram never spans a comma or a full stop.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

# --- stemming ---
# Porter (1980), steps 1-5, with the most aggressive step-4 endings left out: stripping -al and
# -er would merge "general" with "generation" and "transformer" with "transform".
# Porter2 (snowballstemmer, PyStemmer) with the exceptions below and "transformer" kept whole
# was tried instead: benchmarks/ranking_eval.py gave P@5 0.742 (0.733 with this one) and P@10
# 0.442 (the same), but P@5 after 20 votes fell from 0.413 to 0.375. Porter2 keeps "llms" apart
# from "llm" and merges continual/continuous, proximal/proximity and computer/compute.

# fmt: off
_STEP2 = (
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"),
    ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"),
    ("ization", "ize"), ("isation", "ize"), ("ation", "ate"), ("ator", "ate"), ("alism", "al"),
    ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
    ("iviti", "ive"), ("biliti", "ble"), ("logi", "log"),
)
_STEP3 = (
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"),
    ("ful", ""), ("ness", ""),
)
_STEP4 = (
    "ance", "ence", "able", "ible", "ement", "ment", "ent", "ant", "ism", "ate", "iti", "ous",
    "ive", "ize", "ic",
)
# Words the rules would merge with an unrelated family.
_STEM_EXCEPTIONS = {
    "generic": "generic", "experiment": "experiment", "experiments": "experiment",
    "experimental": "experiment", "news": "news", "series": "series", "species": "species",
    "children": "child", "curricula": "curriculum", "indices": "index",
}
# fmt: on


def _is_consonant(word: str, i: int) -> bool:
    ch = word[i]
    if ch in "aeiou":
        return False
    if ch == "y":
        return i == 0 or not _is_consonant(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel→consonant transitions."""
    m, prev_vowel = 0, False
    for i in range(len(stem)):
        vowel = not _is_consonant(stem, i)
        if prev_vowel and not vowel:
            m += 1
        prev_vowel = vowel
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _is_consonant(stem, i) for i in range(len(stem)))


def _ends_cvc(word: str) -> bool:
    """Consonant-vowel-consonant, the last not w, x or y (hop, not hoop or snow)."""
    n = len(word)
    return (
        n >= 3
        and _is_consonant(word, n - 3)
        and not _is_consonant(word, n - 2)
        and _is_consonant(word, n - 1)
        and word[-1] not in "wxy"
    )


def _step1(word: str) -> str:
    """Plurals, -ed and -ing, and a final y."""
    if word.endswith(("sses", "ies")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    if word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    elif word.endswith(("ed", "ing")):
        base = word[:-2] if word.endswith("ed") else word[:-3]
        if _has_vowel(base):
            word = _restore_ending(base)
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def _restore_ending(base: str) -> str:
    """After -ed / -ing: conflat(ed) → conflate, hopp(ing) → hop, hop(ed) → hope."""
    if base.endswith(("at", "bl", "iz")):
        return base + "e"
    if len(base) > 1 and base[-1] == base[-2] and base[-1] not in "lsz":
        return base[:-1]
    if _measure(base) == 1 and _ends_cvc(base):
        return base + "e"
    return base


def _replace_suffix(word: str, rules: Iterable[tuple[str, str]], min_measure: int) -> str:
    for suffix, replacement in rules:
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            return stem + replacement if _measure(stem) > min_measure else word
    return word


def _step4(word: str) -> str:
    for suffix in _STEP4:
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            return stem if _measure(stem) > 1 else word
    if word.endswith("ion") and word[-4:-3] in ("s", "t") and _measure(word[:-3]) > 1:
        return word[:-3]
    return word


def _step5(word: str) -> str:
    if word.endswith("e"):
        m = _measure(word[:-1])
        if m > 1 or (m == 1 and not _ends_cvc(word[:-1])):
            word = word[:-1]
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


@lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """Reduce an English word to its stem: learning → learn, robotics → robot."""
    word = word.lower()
    if word in _STEM_EXCEPTIONS:
        return _STEM_EXCEPTIONS[word]
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    word = _step1(word)
    word = _replace_suffix(word, _STEP2, 0)
    word = _replace_suffix(word, _STEP3, 0)
    return _step5(_step4(word))


# --- tokenising ---

_STOPWORDS = """
    a about above after again against all almost along already also although always am among an
    and another any anyone anything are around as at be became because been before being below
    between both but by can cannot could did do does doing done down during each either else
    especially etc even ever every few for from further had has have having he her here hers
    him his how however i if in into is it its itself just least less let like likes liked many
    may me might more most mostly much must my neither no nor not now of off often on once one
    only or other others our ours out over own per perhaps please quite rather really same she
    should since so some something such than that the their theirs them then there these they
    this those though through thus to too toward towards under until up upon us very via was we
    well were what when where whether which while who whom whose why will with within without
    would yet you your yours
    interested interest interests love enjoy want wanted looking mainly particularly paper papers
    article articles stuff thing things topic topics related latest recent new kind kinds e g eg
    ie vs versus lot lots
    propose proposed proposes present presents introduce introduces introduced novel show shows
    shown demonstrate demonstrates result results approach approaches method methods work works
    study studies use uses used using based achieve achieves first several various different
"""
STOPWORDS = frozenset(_STOPWORDS.split())

_TAGS = re.compile(r"<[^>]{0,500}>")
_PHRASE_BREAK = re.compile(r"[.,;:!?()\[\]{}<>\"|/\\–—]+|\s-\s|['’]s\b")
_WORD = re.compile(r"[^\W_]+(?:_[^\W_]+)*")  # "_" only joins compounds (see below)
# "pre-trained", "pre trained" and "pretrained" are one word (pre_trained), and so on.
_COMPOUND = re.compile(
    r"\b(pre|fine|multi|semi|self|non)[-\s]?"
    r"(?=(?:train|tun|modal|task|agent|lingual|supervis|stationar|linear|attent|improv|play|"
    r"distil|refin|reflect|consisten|correct|instruct|generat|evolv|reward))"
)


@dataclass(frozen=True)
class Token:
    term: str  # the stem
    word: str  # as written (case-folded)
    joined: bool  # directly after the previous token, with no stop word dropped in between


def phrases(text: str, limit: int | None = None) -> list[list[Token]]:
    """The first `limit` characters of `text` (all if None) as phrases of stemmed content words.

    HTML tags are dropped and entities decoded; phrases never span punctuation.
    """
    text = unicodedata.normalize("NFKC", html.unescape(_TAGS.sub(" ", text[:limit]))).casefold()
    text = _COMPOUND.sub(r"\1_", text)
    found = []
    for chunk in _PHRASE_BREAK.split(text):
        tokens: list[Token] = []
        joined = False
        for w in _WORD.findall(chunk):
            if len(w) < 2 or w.isdigit() or w in STOPWORDS:
                joined = False
                continue
            tokens.append(Token(stem(w.replace("_", "")), w.replace("_", "-"), joined))
            joined = True
        if tokens:
            found.append(tokens)
    return found


def terms(runs: list[list[Token]]) -> Iterable[tuple[str, str, bool]]:
    """(term, words it came from, is_bigram) for every word and pair of neighbouring words."""
    for phrase in runs:
        for i, token in enumerate(phrase):
            yield token.term, token.word, False
            if i:
                prev = phrase[i - 1]
                yield f"{prev.term} {token.term}", f"{prev.word} {token.word}", True


@lru_cache(maxsize=16_384)
def stems(text: str, limit: int | None = None) -> tuple[str, ...]:
    """The stems of the content words in the first `limit` characters of `text` (all if None)."""
    return tuple(t.term for phrase in phrases(text, limit) for t in phrase)
