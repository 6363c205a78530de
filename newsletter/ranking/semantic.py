"""Dense similarity mixed into the lexical ranking, when an embedding model is configured.

An issue's index may carry a `DenseIndex` (`with_embeddings`): a unit vector per paper (stored,
computed once per paper: `newsletter.embeddings`) and a function that encodes a short text (the
reader's interests, a liked title) with the same model, cached per process. `score` then calls:

* `fuse_stated`: the stated-interests score, blended with the cosine of each paper to the
  interests (linear fusion of scores scaled to 0..1, or reciprocal rank fusion);
* `fuse_liked`: the liked-papers score, blended with each paper's similarity to the liked titles;
* `dense_reason`: "Close to your interest “…”", for a paper the lexical test did not call a good
  match but whose cosine to the interests clears `for_you_cosine`.

Without a DenseIndex every function returns its input: the ranking is the lexical one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from newsletter.ranking.index import PaperIndex
from newsletter.values import shorten

REASON_CHARS = 80


@dataclass(frozen=True)
class DenseParams:
    """How much dense similarity counts; `benchmarks/ranking_eval.py --embeddings` measures them.

    With all-MiniLM-L6-v2 on the eval (tune / held-out P@5): the lexical ranking 0.620 / 0.556;
    linear fusion at 0.1, the best weight on the tune part, 0.633 / 0.544; dense alone 0.487 /
    0.444; reciprocal rank fusion no better than linear at any weight. Liked titles (max cosine)
    at 0.3 of the liked score: onboarding P@5 after 3 picks of the topic-covering picker 0.408
    (0.417 without), then +5 votes 0.467 (0.442 without); the feedback simulation after 20 votes
    0.429 (0.413). At 0.5 onboarding falls to 0.375; the centroid (which ranks as the mean
    cosine does) did no better than max. None of this is outside one labeller's noise.
    """

    stated_weight: float = 0.1  # share of the cosine in the stated-interests score (0 = off)
    fusion: Literal["linear", "rrf"] = "linear"
    rrf_k: int = 60  # reciprocal rank fusion's k
    liked_weight: float = 0.3  # share of similarity to liked titles in the liked score (0 = off)
    liked_mode: Literal["max", "mean", "centroid"] = "max"
    # A paper the lexical test does not call a good match is still "For you" at this cosine to
    # the stated interests (None: never): at 0.5 "For you" stays 50.2% relevant, at 0.4 it
    # falls to 46.0%.
    for_you_cosine: float | None = 0.5


@dataclass(frozen=True)
class DenseIndex:
    vectors: Any  # numpy (papers, dim): unit vectors in the index's order
    encode: Callable[[str], Any] = field(compare=False)  # a text's unit vector (cached)
    params: DenseParams = DenseParams()

    def cosines(self, text: str) -> list[float]:
        return (self.vectors @ self.encode(text)).tolist()


def with_embeddings(
    index: PaperIndex, vectors: Any, encode: Callable[[str], Any], params: DenseParams | None = None
) -> PaperIndex:
    """The index with its papers' vectors (rows in `index.papers` order) and the encoder of
    short texts. Liked papers are represented by their titles' vectors: the profile keeps titles,
    and the stored title-and-abstract vectors of the same papers measured no better."""
    if len(vectors) != len(index.papers):
        raise ValueError(f"{len(vectors)} vectors for {len(index.papers)} papers")
    return replace(index, dense=DenseIndex(vectors, encode, params or DenseParams()))


def fuse_stated(index: PaperIndex, text: str, stated: list[float], candidates: list[int]) -> list[float]:
    """The stated-interests scores (0..1 over the candidates) blended with dense similarity."""
    dense = index.dense
    if dense is None or not text.strip() or dense.params.stated_weight <= 0:
        return stated
    cosines = dense.cosines(text)
    if dense.params.fusion == "rrf":
        return _rrf(stated, cosines, candidates, dense.params)
    return _blend(stated, _minmax(cosines, candidates), dense.params.stated_weight)


def fuse_liked(
    index: PaperIndex, liked_titles: Sequence[str], liked: list[float], candidates: list[int]
) -> list[float]:
    """The liked-papers scores (-1..1) blended with similarity to the liked titles."""
    dense = index.dense
    if dense is None or not liked_titles or dense.params.liked_weight <= 0:
        return liked
    import numpy as np

    mine = np.stack([dense.encode(t) for t in liked_titles])
    if dense.params.liked_mode == "centroid":
        centre = mine.mean(axis=0)
        similar = dense.vectors @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
    elif dense.params.liked_mode == "mean":
        similar = (dense.vectors @ mine.T).mean(axis=1)
    else:
        similar = (dense.vectors @ mine.T).max(axis=1)
    return _blend(liked, _minmax(similar.tolist(), candidates), dense.params.liked_weight)


def dense_reason(index: PaperIndex, doc: int, text: str) -> str:
    """ "Close to your interest “…”" if the paper's cosine to the interests clears the
    threshold, else ""."""
    dense = index.dense
    if dense is None or dense.params.for_you_cosine is None or not text.strip():
        return ""
    if float(dense.vectors[doc] @ dense.encode(text)) < dense.params.for_you_cosine:
        return ""
    quoted = shorten(" ".join(text.split()), REASON_CHARS - len("Close to your interest “”"), one_line=True)
    return f"Close to your interest “{quoted}”"


def _blend(lexical: list[float], dense: list[float], weight: float) -> list[float]:
    return [(1 - weight) * a + weight * b for a, b in zip(lexical, dense, strict=True)]


def _minmax(scores: list[float], candidates: list[int]) -> list[float]:
    """Scores scaled so that the worst candidate is 0 and the best 1."""
    low = min((scores[d] for d in candidates), default=0.0)
    high = max((scores[d] for d in candidates), default=0.0)
    span = (high - low) or 1.0
    return [(s - low) / span for s in scores]


def _rrf(
    stated: list[float], cosines: list[float], candidates: list[int], params: DenseParams
) -> list[float]:
    """Reciprocal rank fusion, scaled so the paper first in both lists scores 1. A paper the
    lexical score gives nothing keeps its dense rank only."""
    k, weight = params.rrf_k, params.stated_weight
    fused = [0.0] * len(stated)
    for scores, share in ((stated, 1 - weight), (cosines, weight)):
        order = sorted(
            (d for d in candidates if scores[d] > 0 or scores is cosines), key=lambda d: -scores[d]
        )
        for rank, doc in enumerate(order):
            fused[doc] += share * (k + 1) / (k + 1 + rank)
    return fused
