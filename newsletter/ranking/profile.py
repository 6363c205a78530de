"""Learning from "more / less like this" votes: a Rocchio profile of term weights.

A profile is plain JSON, stored on the subscriber: {"terms": {label: weight}, "liked": [titles],
"disliked": [titles], "votes": n}. A like moves the learned weights towards the paper's
strongest terms; a dislike moves them away from its distinctive words only, so words most papers
share ("learning") are hardly touched. `profile_scores` is what ranking mixes in.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from newsletter.ranking.index import PaperIndex, idf_of, liked_title
from newsletter.ranking.params import DEFAULT_PARAMS, RankingParams
from newsletter.ranking.text import stems


def update_profile(
    profile: dict[str, Any] | None,
    index: PaperIndex,
    paper_id: int,
    direction: int,
    *,
    params: RankingParams | None = None,
) -> dict[str, Any]:
    """Return a new profile after a "more like this" (+1) or "less like this" (-1) vote.

    Rocchio: the learned term vector moves towards (+1) the paper's strongest terms, or away
    (-1) from its distinctive ones (a word most papers share, such as "learning", hardly moves:
    see `RankingParams.profile_dislike_idf`); older weights fade slightly. At most
    `profile_max_terms` weights are kept (`_strongest`). The result is plain JSON: {"terms":
    {label: weight}, "liked": [titles, most recent last], "disliked": [...], "votes": n}.
    `params` default to the index's. Raises KeyError if the paper is not in the index.
    """
    if direction not in (1, -1):
        raise ValueError("direction must be +1 or -1")
    params = params if params is not None else index.params
    doc = index.positions[paper_id]
    old = clean_profile(profile, params)
    terms = {label: w * params.profile_decay for label, w in old["terms"].items()}
    rare = idf_of(len(index.papers), 1)
    for term, unit in index.top_terms[doc]:
        label = index.labels.get(term, term)
        if direction > 0:
            step = params.profile_like * unit
        else:
            distinct = (index.idf.get(term, 0.0) / rare) ** params.profile_dislike_idf
            step = -params.profile_dislike * unit * distinct
        terms[label] = terms.get(label, 0.0) + step
    kept = _strongest(terms, params)
    title = index.kept_titles[doc]
    mine, other = ("liked", "disliked") if direction > 0 else ("disliked", "liked")
    return {
        "terms": {label: round(w, 4) for label, w in kept if abs(w) >= 1e-4},
        mine: ([t for t in old[mine] if t != title] + [title])[-params.profile_max_titles :],
        other: [t for t in old[other] if t != title],
        "votes": old["votes"] + 1,
    }


def has_liked(profile: dict[str, Any] | None, index: PaperIndex, paper_id: int) -> bool:
    """Whether the paper is among the profile's liked titles (the most recent ones kept)."""
    return index.kept_titles[index.positions[paper_id]] in clean_profile(profile, index.params)["liked"]


def describe_profile(
    profile: dict[str, Any] | None, limit: int = 10, *, params: RankingParams = DEFAULT_PARAMS
) -> list[tuple[str, float]]:
    """The learned terms that matter most, strongest first, for a preferences page."""
    terms = clean_profile(profile, params)["terms"]
    return heapq.nlargest(limit, terms.items(), key=lambda kv: abs(kv[1]))


def clean_profile(profile: Any, params: RankingParams) -> dict[str, Any]:
    """A well-formed profile, whatever was stored (None, {}, hand-edited JSON)."""
    profile = profile if isinstance(profile, dict) else {}
    terms = profile.get("terms")
    votes = profile.get("votes")
    cap = params.profile_max_weight
    weights = {
        str(k): float(v)
        for k, v in (terms.items() if isinstance(terms, dict) else ())
        if isinstance(v, (int, float)) and -cap <= v <= cap
    }  # NaN, infinities and absurd weights are dropped
    if len(weights) > params.profile_max_terms:
        weights = dict(_strongest(weights, params))
    return {
        "terms": weights,
        "liked": _titles(profile.get("liked"), params),
        "disliked": _titles(profile.get("disliked"), params),
        "votes": votes if isinstance(votes, int) and votes > 0 else 0,
    }


def profile_scores(
    index: PaperIndex, terms: Mapping[str, float], params: RankingParams
) -> tuple[list[float], list[float]]:
    """Dot products of each paper's unit term vector with the liked (positive) and with the
    disliked (negative, as positive numbers) learned term weights. Liked words also match their
    lexicon expansions, as stated interests do; disliked ones match only themselves."""
    liked = [0.0] * len(index.papers)
    disliked = [0.0] * len(index.papers)
    postings, expansions = index.postings, index.expansions
    for label, weight in terms.items():
        key = _term_key(label, params.max_interest_chars)
        if key is None:
            continue
        if weight > 0:
            for doc, _bm25, unit in postings.get(key, ()):
                liked[doc] += weight * unit
            for doc, unit in expansions.get(key, ()):
                liked[doc] += weight * unit
        else:
            for doc, _bm25, unit in postings.get(key, ()):
                disliked[doc] -= weight * unit
    return liked, disliked


@lru_cache(maxsize=16_384)
def _term_key(label: str, limit: int) -> str | None:
    """The index term for a profile label ("continual learning" → "continual learn")."""
    found = stems(label, limit)
    if len(found) == 1:
        return found[0]
    if len(found) == 2:
        return f"{found[0]} {found[1]}"
    return None


def _strongest(terms: Mapping[str, float], params: RankingParams) -> list[tuple[str, float]]:
    """The `profile_max_terms` weights to keep: the strongest liked ones, up to
    `profile_liked_share` of the slots, then the largest |weights| of the rest. Likes are rarer
    and say more than dislikes, so a run of "less like this" must not push out what the reader
    liked."""
    liked = heapq.nlargest(
        int(params.profile_max_terms * params.profile_liked_share),
        ((k, w) for k, w in terms.items() if w > 0),
        key=lambda kv: kv[1],
    )
    chosen = {k for k, _ in liked}
    rest = ((k, w) for k, w in terms.items() if k not in chosen)
    return liked + heapq.nlargest(params.profile_max_terms - len(liked), rest, key=lambda kv: abs(kv[1]))


def _titles(value: Any, params: RankingParams) -> list[str]:
    if not isinstance(value, list):
        return []
    titles = [liked_title(t) for t in value if isinstance(t, str)]
    return titles[-params.profile_max_titles :]
