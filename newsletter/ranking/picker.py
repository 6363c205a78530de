"""Which papers the onboarding picker offers: a few that between them stand for the whole period.

A reader who tells us nothing ticks "papers like these" from a short list. The most trending
papers make a poor list: they hold about 1.5 papers of a given reader's topic on average (the
eval's simulated readers), so most readers find little to tick. Instead the list is chosen by
greedy facility location: each pick is the paper that most raises how closely every paper of
the period resembles its nearest listed one, over the terms a tick would teach the profile. The
first picks stand for the largest topics, later ones for the smaller topics not yet
represented, so a list of 20 covers the period's topics as well as 20 papers can; trending only
breaks ties.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection

from newsletter.ranking.index import PaperIndex


def picker_order(index: PaperIndex, limit: int, candidates: Collection[int] | None = None) -> list[int]:
    """Up to `limit` paper ids of `candidates` (ids; every indexed paper if None) for readers
    to pick from, in the order to list them: the paper standing for the most of the period first.

    `index.params.picker_coverage` weighs coverage against trending: 1 (the default) chooses
    for coverage alone, trending breaking ties; 0 lists the most trending papers.
    """
    docs = [d for d, p in enumerate(index.papers) if candidates is None or p.id in candidates]
    if limit <= 0 or not docs:
        return []
    weight = index.params.picker_coverage
    sims = _similarities(index, docs) if weight > 0 else [[0.0] * len(docs) for _ in docs]
    trending = [index.trending[d] for d in docs]
    best = [0.0] * len(docs)  # each paper's resemblance to its nearest listed paper
    chosen: list[int] = []
    for _ in range(min(limit, len(docs))):
        gains = {
            c: weight * sum(max(s - b, 0.0) for s, b in zip(sims[c], best, strict=True))
            + (1 - weight) * trending[c]
            for c in range(len(docs))
            if c not in chosen
        }
        pick = max(gains, key=lambda c: (gains[c], trending[c], -c))
        chosen.append(pick)
        best = [max(s, b) for s, b in zip(sims[pick], best, strict=True)]
    return [index.papers[docs[c]].id for c in chosen]


def _similarities(index: PaperIndex, docs: list[int]) -> list[list[float]]:
    """Cosine similarity between the papers `docs` (as positions in `docs`) over each paper's
    strongest shared terms (`PaperIndex.top_terms`): the terms a tick moves the reader's profile
    along, so the list stands for the period as the ticks will teach it."""
    by_term: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for i, doc in enumerate(docs):
        top = index.top_terms[doc]
        norm = math.sqrt(sum(w * w for _, w in top)) or 1.0
        for term, w in top:
            by_term[term].append((i, w / norm))
    sims = [[0.0] * len(docs) for _ in docs]
    for members in by_term.values():
        for i, wi in members:
            row = sims[i]
            for j, wj in members:
                row[j] += wi * wj
    return sims
