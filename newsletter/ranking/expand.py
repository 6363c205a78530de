"""Query expansion learned from the issue's own papers, not from a hand-written list.

* Pseudo-relevance feedback (RM3, Lavrenko & Croft 2001; Abdul-Jaleel et al. 2004): the papers
  that match the reader's words best are taken as relevant, the terms they share are added to
  the query, and the papers are scored again. A reader who writes "skill discovery" also gets
  the papers about "intrinsic motivation" and "open-ended" agents that the best matches talk
  about, without anyone having written that down.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

from newsletter.ranking.index import PaperIndex
from newsletter.ranking.params import RankingParams


def feedback_terms(
    index: PaperIndex, scores: list[float], candidates: list[int], params: RankingParams
) -> list[tuple[str, float]]:
    """RM3's relevance model: the `prf_terms` strongest terms of the `prf_docs` best-scoring
    candidates, each paper's terms weighted by its score relative to the best one; weights sum
    to 1. Empty when fewer than `prf_docs` papers match: what one or two papers share is mostly
    their own topic, not the reader's, and those few are found anyway."""
    top = heapq.nlargest(params.prf_docs, (d for d in candidates if scores[d] > 0), key=scores.__getitem__)
    if len(top) < params.prf_docs:
        return []
    best = scores[top[0]]
    model: dict[str, float] = defaultdict(float)
    for doc in top:
        for term, unit in index.top_terms[doc]:
            model[term] += scores[doc] / best * unit
    chosen = heapq.nlargest(params.prf_terms, model.items(), key=lambda kv: kv[1])
    total = sum(w for _, w in chosen) or 1.0
    return [(term, w / total) for term, w in chosen]
