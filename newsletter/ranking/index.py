"""One issue's papers, indexed once: BM25F term weights, idf, labels and trending scores.

An issue builds one `PaperIndex` (`build_index`); `rank_papers` then runs once per subscriber,
so everything that does not depend on the reader is computed here. Papers are weighted
BM25F-style: a title match counts more than an abstract match, and term frequency saturates,
so one long abstract cannot win on repetition alone.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from newsletter.ranking.lexicon import lexicon, phrase_keys
from newsletter.ranking.params import DEFAULT_PARAMS, RankingParams
from newsletter.ranking.text import phrases, terms
from newsletter.values import as_utc, shorten

MAX_TITLE_CHARS = 300  # a liked or disliked title as kept in the profile


def liked_title(title: str) -> str:
    """A paper's title as a profile keeps it among the liked (and disliked) ones."""
    return shorten(title, MAX_TITLE_CHARS, one_line=True)


FieldTerms = dict[str, Counter[tuple[str, str, bool]]]  # field → (term, words, is_bigram) → count


@dataclass(frozen=True)
class PaperText:
    """What ranking needs to know about a paper."""

    id: int
    title: str
    abstract: str = ""
    keywords: tuple[str, ...] = ()
    upvotes: int = 0
    published_at: datetime | None = None
    comments: int = 0
    github_stars: int = 0


@dataclass(frozen=True)
class PaperIndex:
    """Everything about one issue's papers that does not depend on the reader."""

    papers: tuple[PaperText, ...]
    trending: tuple[float, ...]
    postings: Mapping[str, tuple[tuple[int, float, float], ...]]  # term → (doc, bm25, unit)
    doc_terms: tuple[Mapping[str, float], ...]  # per paper: term → BM25 weight
    top_terms: tuple[tuple[tuple[str, float], ...], ...]  # per paper: strongest (term, unit)
    idf: Mapping[str, float]
    labels: Mapping[str, str]  # term → the words it most often came from ("continual learning")
    positions: Mapping[int, int]  # paper id → position in `papers`
    # term → (doc, weight) of the lexicon expansions of the term found in each paper: what a liked
    # word brings in ("llm" → papers saying "large language model"); see profile_expansion
    expansions: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    params: RankingParams = DEFAULT_PARAMS  # what it was built with; ranking uses them too
    # A `semantic.DenseIndex` when an embedding model is configured (`semantic.with_embeddings`)
    dense: Any = None
    # per paper: its title as a profile keeps it (`liked_title`), worked out once per issue, not
    # for every paper of every reader who voted
    kept_titles: tuple[str, ...] = ()


def engagement(
    upvotes: int, comments: int = 0, github_stars: int = 0, params: RankingParams = DEFAULT_PARAMS
) -> float:
    """Upvotes, plus comments (each worth `trending_comment_weight` of an upvote) and code stars
    on a log scale (`trending_stars_weight` × log2(1 + stars): 7 stars ≈ 3 upvotes, 1,000 ≈ 10,
    so a famous repository cannot outweigh what readers of the listing voted)."""
    u = max(int(upvotes or 0), 0)
    c = max(int(comments or 0), 0)
    s = max(int(github_stars or 0), 0)
    return u + params.trending_comment_weight * c + params.trending_stars_weight * math.log2(1 + s)


def trending_score(
    upvotes: int,
    published_at: datetime | None,
    now: datetime,
    params: RankingParams = DEFAULT_PARAMS,
    *,
    comments: int = 0,
    github_stars: int = 0,
) -> float:
    """Popularity decayed by age, in [0, 1).

    ``popularity = u / (u + 30)`` for ``u = engagement(...)`` (upvotes, comments and code stars):
    diminishing returns, so 30 upvotes give 0.5, 90 give 0.75 and 300 give 0.91.
    ``decay = 0.5 ** (age_days / 3)``: the score halves every three days; a date in the future
    counts as age 0, an unknown date as one half-life (0.5). (30 and 3 are the defaults of
    `params.trending_upvotes_half` and `params.trending_half_life_days`.)
    Naive datetimes are taken to be UTC.
    """
    u = engagement(upvotes, comments, github_stars, params)
    popularity = u / (u + params.trending_upvotes_half)
    if published_at is None:
        return popularity * params.trending_unknown_age
    age_days = max((as_utc(now) - as_utc(published_at)).total_seconds() / 86_400, 0.0)
    return popularity * 0.5 ** (age_days / params.trending_half_life_days)


def build_index(
    papers: Sequence[PaperText], now: datetime, params: RankingParams = DEFAULT_PARAMS
) -> PaperIndex:
    """Precompute term weights, idf and trending scores for one issue's papers.

    The index keeps `params`: `rank_papers` and `update_profile` use them unless given others.
    """
    fields = [_field_terms(p, params.max_field_chars) for p in papers]
    labels = _labels(fields)
    doc_freq = Counter(term for paper in fields for term in {t for c in paper.values() for t, _, _ in c})
    avg_len = {
        f: max(sum(_length(paper[f]) for paper in fields) / max(len(fields), 1), 1.0) for f in params.fields()
    }
    n = len(papers)
    idf = {t: idf_of(n, df) for t, df in doc_freq.items()}
    doc_terms = tuple(_bm25f(paper, idf, avg_len, params) for paper in fields)
    units = tuple(_unit(weights) for weights in doc_terms)
    postings: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for doc, weights in enumerate(doc_terms):
        for term, weight in weights.items():
            postings[term].append((doc, weight, units[doc][term]))
    return PaperIndex(
        papers=tuple(papers),
        trending=tuple(
            trending_score(
                p.upvotes, p.published_at, now, params, comments=p.comments, github_stars=p.github_stars
            )
            for p in papers
        ),
        postings={t: tuple(p) for t, p in postings.items()},
        doc_terms=doc_terms,
        top_terms=tuple(_profile_terms(u, postings, params.profile_terms_per_vote) for u in units),
        idf=idf,
        labels=labels,
        positions={p.id: i for i, p in enumerate(papers)},
        expansions=_expansion_postings(postings, params),
        params=params,
        kept_titles=tuple(liked_title(p.title) for p in papers),
    )


def idf_of(n: int, df: int) -> float:
    """BM25's idf of a term found in `df` of `n` papers."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _expansion_postings(
    postings: Mapping[str, list[tuple[int, float, float]]], params: RankingParams
) -> dict[str, tuple[tuple[int, float], ...]]:
    """For each lexicon word or two-word phrase, the papers its expansions match: (doc, sum of
    expansion weight × unit weight), scaled by `params.profile_expansion`. Keyed by the term
    itself, so a liked "llm" learned from last week's issue finds this week's "large language
    model". Only an expansion's core terms count (its words and bigrams, not the stray single
    words of a longer phrase such as "large" or "model"): they say little alone, and they are
    common."""
    expansions: dict[str, tuple[tuple[int, float], ...]] = {}
    if params.profile_expansion <= 0:
        return expansions
    for key, group in lexicon(params.synonym_weight, params.related_weight).entries.items():
        if len(key) > 2:  # profile labels are words and bigrams
            continue
        weights: dict[int, float] = defaultdict(float)
        for expansion in group:
            for target in expansion.phrases:
                for term, weight, core in phrase_keys(target, expansion.weight):
                    if not core:
                        continue
                    for doc, _bm25, unit in postings.get(term, ()):
                        weights[doc] += params.profile_expansion * weight * unit
        if weights:
            expansions[" ".join(key)] = tuple(weights.items())
    return expansions


def _profile_terms(
    unit: Mapping[str, float], postings: Mapping[str, list[Any]], limit: int
) -> tuple[tuple[str, float], ...]:
    """A paper's `limit` strongest terms among those shared with another paper: a term found in
    one paper only says nothing about which other papers the reader will like."""
    shared = ((t, w) for t, w in unit.items() if len(postings[t]) > 1)
    return tuple(heapq.nlargest(limit, shared, key=lambda kv: kv[1]))


def _field_terms(paper: PaperText, limit: int) -> FieldTerms:
    texts = {
        "title": paper.title or "",
        "keywords": " . ".join(paper.keywords or ()),
        "abstract": paper.abstract or "",
    }
    return {f: Counter(terms(phrases(text, limit))) for f, text in texts.items()}


def _labels(fields: list[FieldTerms]) -> dict[str, str]:
    """For each term, the words it most often came from, to show to readers."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for paper in fields:
        for counts in paper.values():
            for (term, words, _), count in counts.items():
                seen[term][words] += count
    return {term: words.most_common(1)[0][0] for term, words in seen.items()}


def _bm25f(
    paper: FieldTerms, idf: Mapping[str, float], avg_len: Mapping[str, float], params: RankingParams
) -> dict[str, float]:
    tf: dict[str, float] = defaultdict(float)
    fields = params.fields()
    for f, counts in paper.items():
        weight, b = fields[f]
        norm = weight / (1 - b + b * _length(counts) / avg_len[f])
        for (term, _, _), count in counts.items():
            tf[term] += count * norm
    k1 = params.bm25_k1
    return {t: idf[t] * x * (k1 + 1) / (x + k1) for t, x in tf.items()}


def _length(counts: Counter[tuple[str, str, bool]]) -> int:
    return sum(c for (_, _, bigram), c in counts.items() if not bigram)


def _unit(weights: Mapping[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
    return {t: w / norm for t, w in weights.items()}
