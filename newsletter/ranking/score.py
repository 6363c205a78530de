"""Ranking one reader's papers: query expansion, relevance, the trending blend and "why".

Relevance is lexical and explainable:

* the reader's words and bigrams are looked up in the index (BM25F, see `index`), and expanded
  with the lexicon's synonyms ("llm" ↔ "large language model") and related terms ("robot" →
  "manipulation") at lower weight;
* a paper that covers more of the reader's words ("LLM agents and tool use") beats one that
  repeats a single word many times;
* a learned profile (`profile`) is mixed in, and vague stated interests ("learning") yield to
  what the reader's votes say.

Relevance is then blended with trending, and a reader whose interests match nothing gets the
trending order. Every `RankedItem` says why it was chosen.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from newsletter.ranking.index import PaperIndex, idf_of
from newsletter.ranking.lexicon import Expansion, lexicon, phrase_keys
from newsletter.ranking.params import RankingParams
from newsletter.ranking.profile import clean_profile, profile_scores
from newsletter.ranking.semantic import dense_reason, fuse_liked, fuse_stated
from newsletter.ranking.text import Token, phrases, stems
from newsletter.values import shorten

LIKED_TITLE_CHARS = 80  # the whole "Because you liked …" line, with the quoted title
WHY_CHARS = 80  # the longest "why" line a card shows


@dataclass
class RankedItem:
    paper_id: int
    score: float  # what the list is sorted by: relevance blended with trending
    relevance: float  # -1..1; negative when the paper resembles ones the reader disliked
    trending: float  # 0..1, see trending_score
    why: str  # one short line for the email; "" when the paper is there for trending alone
    matched_terms: tuple[str, ...]  # the reader's words (or their synonyms) found in the paper
    for_you: bool = False  # it matches the reader well (see `_good_match`), not merely trends


@dataclass(frozen=True)
class Query:
    # (term, weight, shown): shown is the reader's words the term stands for, "" for a term never
    # named in explanations, None for a related term, named as the paper words it.
    terms: tuple[tuple[str, float, str | None], ...]
    concepts: tuple[tuple[str, frozenset[str]], ...]  # a stated word, and terms that match it
    # The stated words in runs the reader wrote together ("medical image segmentation", "robots"):
    # a paper matches a topic well only if it covers most of one (`_good_match`).
    topics: tuple[tuple[str, ...], ...] = ()


# --- the reader's query ---


@lru_cache(maxsize=1_024)  # ~3 KB each; a sender also remembers whole rankings (digests.py)
def parse_query(interests: str, params: RankingParams) -> Query:
    """The reader's words and bigrams, plus their lexicon expansions at lower weight.

    Each stated word is also a "concept" that a paper covers if it contains the word, a bigram
    with it, or one of its expansions; papers covering more concepts rank higher (see _coverage).
    """
    weights: dict[str, float] = {}
    shown: dict[str, str | None] = {}
    concepts: list[tuple[str, set[str]]] = []
    expansions = lexicon(params.synonym_weight, params.related_weight)

    def add(term: str, weight: float, words: str | None, positions: Iterable[int] = ()) -> None:
        if weight > weights.get(term, 0.0):
            weights[term] = weight
            if words or term not in shown:
                shown[term] = words
        for i in positions:
            concepts[i][1].add(term)

    topics: list[list[str]] = []
    for phrase in phrases(interests or "", params.max_interest_chars):
        base = len(concepts)
        for i, token in enumerate(phrase):
            if not (i and token.joined):
                topics.append([])
            topics[-1].append(token.term)
            concepts.append((token.term, {token.term}))
            add(token.term, 1.0, token.word)
            if i:
                prev = phrase[i - 1]
                pair = f"{prev.word} {token.word}" if token.joined else ""
                add(f"{prev.term} {token.term}", params.bigram_weight, pair, (base + i - 1, base + i))
        for start, end, expansion in expansions.matches([t.term for t in phrase]):
            if expansion.weight <= 0:  # switched off (the ablation): it covers nothing either
                continue
            words = _expansion_words(phrase[start:end], expansion)
            # A synonym of a phrase covers all its words; something merely related to a phrase
            # ("vision language" → "visual") covers none of them.
            covers = end - start == 1 or expansion.synonym
            positions = range(base + start, base + end) if covers else range(0)
            for target in expansion.phrases:
                for term, weight, core in phrase_keys(target, expansion.weight):
                    add(term, weight, words, positions if core else ())
    merged: dict[str, set[str]] = defaultdict(set)  # a word stated twice is one concept
    for word, members in concepts:
        merged[word] |= members
    return Query(
        terms=tuple((t, w, shown.get(t, "")) for t, w in weights.items()),
        concepts=tuple((word, frozenset(members)) for word, members in merged.items()),
        topics=tuple(dict.fromkeys(tuple(t) for t in topics)),
    )


def _expansion_words(span: list[Token], expansion: Expansion) -> str | None:
    """How explanations name an expansion found in a paper: by the reader's words for a synonym
    (by the lexicon's phrase if stop words were dropped: "learning from demonstration", not
    "learning demonstration"), and by the paper's own words (None) for a related term."""
    if not expansion.synonym:
        return None
    if all(t.joined for t in span[1:]):
        return " ".join(t.word for t in span)
    return expansion.name


# --- relevance ---


def rank_papers(
    index: PaperIndex,
    interests: str,
    *,
    profile: dict[str, Any] | None = None,
    exclude: Collection[int] = (),
    limit: int = 10,
    params: RankingParams | None = None,
) -> list[RankedItem]:
    """The `limit` best papers for one reader, best first, never one of `exclude`.

    Relevance to the stated interests and to the learned profile (if any) is blended with
    trending; with no usable interests and no profile the order is the trending order.
    `params` default to the ones the index was built with.
    """
    if limit <= 0 or not index.papers:
        return []
    params = params if params is not None else index.params
    excluded = set(exclude)
    candidates = [d for d, p in enumerate(index.papers) if p.id not in excluded]
    text = interests[: params.max_interest_chars] if isinstance(interests, str) else ""
    query = parse_query(text, params)
    profile = clean_profile(profile, params)
    covers = _concept_docs(index, query)
    stated, learned = _relevance_parts(index, text, query, covers, profile, candidates, params)
    relevance = [s + p for s, p in zip(stated, learned, strict=True)]
    share = params.trending_weight
    score = [(1 - share) * r + share * t for r, t in zip(relevance, index.trending, strict=True)]
    best = heapq.nlargest(limit, candidates, key=lambda d: (score[d], index.trending[d], -d))
    liked = profile["liked"]
    weights = _concept_weights(index, covers)
    # "Because you liked …" only for a paper that resembles the liked ones well: a share of the
    # closest paper's likeness, a liked paper itself aside (any paper past the floor qualified).
    others = [learned[d] for d in candidates if index.kept_titles[d] not in liked]
    bar = params.liked_match_share * max(others, default=0.0)
    return [
        _item(
            index,
            d,
            score[d],
            relevance[d],
            query,
            liked if learned[d] > stated[d] and learned[d] >= bar else None,
            params,
            weights,
            text,
        )
        for d in best
    ]


def _concept_docs(index: PaperIndex, query: Query) -> dict[str, frozenset[int]]:
    """Each stated word and the papers that cover it (the word, a bigram with it or one of its
    expansions): what coverage, specificity and the "For you" test all weigh, found once."""
    return {
        word: frozenset(doc for term in members for doc, _, _ in index.postings.get(term, ()))
        for word, members in query.concepts
    }


def _relevance_parts(
    index: PaperIndex,
    text: str,
    query: Query,
    covers: dict[str, frozenset[int]],
    profile: dict[str, Any],
    candidates: list[int],
    params: RankingParams,
) -> tuple[list[float], list[float]]:
    """Per paper, the parts of its relevance due to the stated interests and to the profile.

    Three scores, each scaled to 0..1 over the candidates: the stated interests, resemblance to
    liked papers and resemblance to disliked ones (Rocchio with each side normalised on its own,
    so that twenty dislikes do not drown one like). The stated and liked parts share a weight of
    1: the profile's grows as votes / `profile_full_votes` up to 1, and the stated interests' is 1,
    less when they are vague (`_specificity`), 0 when they match nothing. Resembling disliked
    papers then subtracts up to `profile_disliked_weight`. Without votes this is the stated score.
    """
    stated = _scaled(_stated_scores(index, query, covers, params.coverage_weight), candidates)
    stated = fuse_stated(index, text, stated, candidates)  # unchanged without embeddings
    has_stated = any(stated[d] for d in candidates)
    if not profile["terms"]:
        return stated, [0.0] * len(stated)
    liked, disliked = (_scaled(s, candidates) for s in profile_scores(index, profile["terms"], params))
    liked = fuse_liked(index, profile["liked"], liked, candidates)
    trust = min(profile["votes"] / params.profile_full_votes, 1.0)
    w_liked = trust if any(liked[d] for d in candidates) else 0.0
    w_stated = 0.0
    if has_stated:
        w_stated = _specificity(index, covers, params.stated_full_specificity) if w_liked else 1.0
    total = (w_stated + w_liked) or 1.0
    push = params.profile_disliked_weight * trust
    return (
        [w_stated * s / total for s in stated],
        [w_liked * p / total - push * n for p, n in zip(liked, disliked, strict=True)],
    )


def _specificity(index: PaperIndex, covers: dict[str, frozenset[int]], full: float) -> float:
    """How far the stated interests narrow this issue down, 0..1: the idf of each stated word
    (with its synonyms) relative to that of a word found in one paper, summed, over `full`
    (1 for any `full` <= 0). "learning" is in nearly every paper and says little about which
    ones the reader wants; "offline RL" says a lot."""
    if full <= 0:
        return 1.0
    n = len(index.papers)
    total = sum(idf_of(n, len(docs)) for docs in covers.values() if docs)
    return min(total / idf_of(n, 1) / full, 1.0)


def _stated_scores(
    index: PaperIndex, query: Query, covers: dict[str, frozenset[int]], coverage_weight: float
) -> list[float]:
    """BM25F score of each paper for the query, scaled down for the reader's words it lacks."""
    coverage = _coverage(index, covers, coverage_weight)
    return [s * c for s, c in zip(_bm25(index, query.terms), coverage, strict=True)]


def _bm25(index: PaperIndex, terms: Iterable[tuple[str, float, str | None]]) -> list[float]:
    scores = [0.0] * len(index.papers)
    for term, weight, _ in terms:
        for doc, bm25, _unit in index.postings.get(term, ()):
            scores[doc] += weight * bm25
    return scores


def _coverage(index: PaperIndex, covers: dict[str, frozenset[int]], weight_lacking: float) -> list[float]:
    """Per paper, 1 - `weight_lacking` × (idf share of the reader's words it does not cover)."""
    covered = [0.0] * len(index.papers)
    total = 0.0
    for word, docs in covers.items():
        weight = index.idf.get(word, 0.0)
        total += weight
        for doc in docs:
            covered[doc] += weight
    if total == 0:
        return [1.0] * len(index.papers)
    return [1 - weight_lacking * (1 - c / total) for c in covered]


def _scaled(scores: list[float], candidates: list[int]) -> list[float]:
    """Scores in -1..1: positive ones divided by the best candidate's, negative ones by the
    worst's. Only candidates count: a paper already sent (often the one the reader liked) must
    not make every other paper look like a weak match."""
    top = max((scores[d] for d in candidates), default=0.0)
    bottom = min((scores[d] for d in candidates), default=0.0)
    up = top if top > 0 else 1.0
    down = -bottom if bottom < 0 else 1.0
    return [s / up if s > 0 else s / down for s in scores]


# --- explanations ---


def _item(
    index: PaperIndex,
    doc: int,
    score: float,
    relevance: float,
    query: Query,
    liked: list[str] | None,
    params: RankingParams,
    weights: dict[str, float],
    text: str = "",
) -> RankedItem:
    """The item for one paper, and the reason it was chosen. `liked` is the reader's liked
    titles if the profile counted for more than the stated interests, else None."""
    shown = relevance >= params.min_relevance
    matched = _matched_words(index, doc, query, params.match_shown_share) if shown else []
    own = [words for words, related in matched if not related]
    why, for_you = "", False
    if shown and liked:  # the learned profile counted for more than the stated words
        title = _closest_title(index, doc, liked, params.max_interest_chars)
        why, for_you = f"Because you liked “{shorten(title, LIKED_TITLE_CHARS - 20, one_line=True)}”", True
    elif shown and own and _good_match(index, own, query, params, weights):
        why, for_you = (
            shorten("Matches your interests: " + ", ".join(own[:3]), WHY_CHARS, one_line=True),
            True,
        )
    elif shown and (close := dense_reason(index, doc, text)):  # "" without embeddings
        why, for_you = close, True
    return RankedItem(
        paper_id=index.papers[doc].id,
        score=round(score, 6),
        relevance=round(relevance, 6),
        trending=round(index.trending[doc], 6),
        why=why,
        matched_terms=tuple(words for words, _ in matched),
        for_you=for_you,
    )


def _concept_weights(index: PaperIndex, covers: dict[str, frozenset[int]]) -> dict[str, float]:
    """Each stated word's idf over the papers that cover it ("llm" counts the papers that say
    "large language model" too); a word no paper covers weighs as much as one in one paper: the
    rest of "spiking neural networks" ("neural networks") never matches it."""
    n = len(index.papers)
    return {word: idf_of(n, max(len(docs), 1)) for word, docs in covers.items()}


def _good_match(
    index: PaperIndex, named: list[str], query: Query, params: RankingParams, weights: dict[str, float]
) -> bool:
    """Whether the reader's words that the "why" line names (`named`, as `_matched_words` found
    them in the paper) cover one of the reader's topics well: at least `match_topic_share` of the
    topic's weight (each stated word weighs its idf, `_concept_weights`) with two of its words,
    or `match_alone_share` with one, and words specific enough (summed idf at least
    `match_min_specificity` of a one-paper word's). So "medical image segmentation" is not
    matched by a paper that only says "image", nor "learning" by anything."""
    one = idf_of(len(index.papers), 1)
    said = {stem for words in named for stem in stems(words, None)}
    for topic in _topic_spans(query.topics):
        covered = [word for word in topic if word in said]
        total, got = sum(weights[word] for word in topic), sum(weights[word] for word in covered)
        if not covered or not total or got / one < params.match_min_specificity:
            continue
        if len(topic) > 1 and (len(covered) < 2 or max(topic, key=weights.__getitem__) not in covered):
            continue  # "machine" is not "machine learning", nor "neural networks" "graph neural networks"
        share = got / total
        if share >= params.match_alone_share or (share >= params.match_topic_share and len(covered) >= 2):
            return True
    return False


def _topic_spans(topics: tuple[tuple[str, ...], ...]) -> list[tuple[str, ...]]:
    """The reader's topics as `_good_match` weighs them: a run of more than three words
    (interests typed as a keyword list, "reinforcement learning robots diffusion models") as its
    pairs of neighbours, which a paper can cover; no paper covered the whole run."""
    spans: list[tuple[str, ...]] = []
    for topic in topics:
        spans.extend(zip(topic, topic[1:], strict=False) if len(topic) > 3 else [topic])
    return spans


def _matched_words(index: PaperIndex, doc: int, query: Query, share: float) -> list[tuple[str, bool]]:
    """(words, is_related) for the query terms found in the paper, most important first.

    A synonym found in the paper shows as the words the reader used ("LLM" for "large language
    model"); a related term shows as the paper words it ("manipulation" for "robot"), after the
    reader's own words. Single words already shown inside a phrase are left out, and so is a
    term that counts for less than `share` of the best one.
    """
    weights, labels = index.doc_terms[doc], index.labels
    found: dict[tuple[bool, str], float] = {}
    for term, weight, shown in query.terms:
        if shown != "" and term in weights:
            key = (shown is None, shown or labels.get(term, term))
            found[key] = found.get(key, 0.0) + weight * weights[term]
    if not found:
        return []
    floor = share * max(found.values())
    named: list[tuple[bool, str, set[str]]] = []  # (related, words, the words as a set)
    for related, words in sorted(found, key=lambda k: (k[0], -found[k])):
        if found[related, words] < floor:
            continue
        these = set(words.split())
        if any(these <= other for _, _, other in named):
            continue
        if related and any(these & other for r, _, other in named if not r):
            continue  # "semantic segmentation" adds nothing to the reader's "segmentation"
        # a phrase replaces its own single words: "continual learning", not "continual"
        named = [n for n in named if n[0] != related or not n[2] <= these]
        named.append((related, words, these))
    return [(words, related) for related, words, _ in named[:5]]


def _closest_title(index: PaperIndex, doc: int, liked: list[str], limit: int) -> str:
    """The liked title sharing the most weight with the paper; ties go to the most recent."""
    weights = index.doc_terms[doc]
    return max(reversed(liked), key=lambda t: sum(weights.get(s, 0.0) for s in set(stems(t, limit))))
