"""Readers who teach the ranking their taste with "more / less like this" votes (simulated).

Used by benchmarks/ranking_eval.py, which prints the results; see `simulate`.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from newsletter.ranking import (
    DEFAULT_PARAMS,
    PaperIndex,
    PaperText,
    RankingParams,
    build_index,
    picker_order,
    rank_papers,
    update_profile,
)

FEEDBACK_VOTES = (0, 1, 3, 5, 10, 20)
Embed = Callable[[PaperIndex], PaperIndex]  # adds paper embeddings to an index (--embeddings)


def plain(index: PaperIndex) -> PaperIndex:
    return index


FEEDBACK_MIN_RELEVANT = 5


class HiddenTopic(Protocol):
    """What the simulation needs of an eval query."""

    relevant: frozenset[int]
    vague_interest: str | None


def simulate(
    papers: Sequence[PaperText],
    queries: Sequence[HiddenTopic],
    now: datetime,
    checkpoints: Sequence[int] = FEEDBACK_VOTES,
    *,
    dislikes: bool = True,
    params: RankingParams = DEFAULT_PARAMS,
    embed: Embed = plain,
) -> dict[str, Any]:
    """Readers who teach the ranking their taste by voting, scored on papers they never saw.

    A reader has a hidden topic (the relevant set of an eval query with a `vague_interest` and at
    least FEEDBACK_MIN_RELEVANT papers) and states only a vague interest: nothing, or the query's
    one-word `vague_interest`. The papers are split in two halves (odd / even position, used both
    ways round), standing for past issues and next week's issue. From the past half the reader
    gets issues of their top five unsent papers and votes on every shown paper, one at a time:
    +1 if it is in the hidden topic, -1 otherwise. After 0, 1, 3, 5 … votes we rank next week's
    half with the learned profile and report precision@5 against the hidden topic, beside the
    same reader without a profile and the best possible value.

    With `dislikes=False` the readers never click "less like this": they look at the same
    papers but only vote +1, and the checkpoints count papers looked at, not votes. The index is
    built for `now` with `params`, which ranking and voting then use, and given to `embed`.
    """
    index = embed(build_index(papers, now, params))
    halves = [frozenset(p.id for p in papers[k::2]) for k in (0, 1)]
    readers = [
        (q, stated)
        for q in queries
        if q.vague_interest and len(q.relevant) >= FEEDBACK_MIN_RELEVANT
        for stated in ("", q.vague_interest)
    ]
    learned: dict[int, list[float]] = {v: [] for v in checkpoints}
    plain, ceiling = [], []
    for (q, stated), (past, upcoming) in itertools.product(readers, (halves, halves[::-1])):
        plain.append(_next_issue_precision(index, stated, None, past, q.relevant))
        ceiling.append(min(len(q.relevant & upcoming), 5) / 5)
        for votes, profile in _votes(index, stated, q.relevant, upcoming, max(checkpoints), dislikes):
            if votes in learned:
                p5 = _next_issue_precision(index, stated, profile, past, q.relevant)
                learned[votes].append(p5)
    return {
        "readers": len(readers),
        "runs": len(plain),
        "without_feedback_p@5": statistics.mean(plain),
        "ceiling_p@5": statistics.mean(ceiling),
        "with_feedback_p@5": {str(v): statistics.mean(p) for v, p in learned.items()},
    }


def _next_issue_precision(
    index: PaperIndex,
    stated: str,
    profile: dict[str, Any] | None,
    past: frozenset[int],
    relevant: frozenset[int],
) -> float:
    ranked = rank_papers(index, stated, profile=profile, exclude=past, limit=5)
    return sum(1 for it in ranked if it.paper_id in relevant) / 5


def _votes(
    index: PaperIndex,
    stated: str,
    relevant: frozenset[int],
    unseen: frozenset[int],
    limit: int,
    dislikes: bool = True,
    profile: dict[str, Any] | None = None,
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(votes cast, profile) after each vote, starting with (0, `profile`); `unseen` is never
    shown. Without `dislikes`, a paper outside the topic gets no vote but still counts as judged."""
    sent = set(unseen)
    votes = 0
    yield votes, profile
    while votes < limit:
        issue = rank_papers(index, stated, profile=profile, exclude=sent, limit=5)
        if not issue:
            return
        for item in issue[: limit - votes]:
            direction = 1 if item.paper_id in relevant else -1
            if direction > 0 or dislikes:
                profile = update_profile(profile, index, item.paper_id, direction)
            votes += 1
            yield votes, profile
        sent.update(item.paper_id for item in issue)


ONBOARDING_PICKS = (0, 1, 3, 5)
PICKER_SHOWN = 20  # what the signup page lists (newsletter.onboarding.PICKER_PAPERS)


def onboarding(
    papers: Sequence[PaperText],
    queries: Sequence[HiddenTopic],
    now: datetime,
    picks: Sequence[int] = ONBOARDING_PICKS,
    shown: int | None = PICKER_SHOWN,
    votes_after: int = 5,
    params: RankingParams = DEFAULT_PARAMS,
    embed: Embed = plain,
) -> dict[str, Any]:
    """Readers with no stated interests who tick papers of this period at signup.

    The same readers and halves as `simulate`: the past half is this period. The picker lists
    `shown` papers chosen as the product's picker chooses them (`picker_order`; every paper of
    the period, most trending first, with None); the reader ticks the first k that
    are in their hidden topic (fewer if the list has fewer). We report P@5 of the next issue
    after the picks, and after `votes_after` digest votes more (on this period's other papers).
    """
    index = embed(build_index(papers, now, params))
    halves = [frozenset(p.id for p in papers[k::2]) for k in (0, 1)]
    readers = [q for q in queries if q.vague_interest and len(q.relevant) >= FEEDBACK_MIN_RELEVANT]
    after_picks: dict[int, list[float]] = {k: [] for k in picks}
    after_votes: dict[int, list[float]] = {k: [] for k in picks}
    ticked: dict[int, list[int]] = {k: [] for k in picks}
    for q, (past, upcoming) in itertools.product(readers, (halves, halves[::-1])):
        if shown is None:  # the whole period, most trending first
            listed = [it.paper_id for it in rank_papers(index, "", exclude=upcoming, limit=len(past))]
        else:
            listed = picker_order(index, shown, candidates=past)
        on_topic = [pid for pid in listed if pid in q.relevant]
        for k in picks:
            profile = None
            for pid in on_topic[:k]:
                profile = update_profile(profile, index, pid, 1)
            ticked[k].append(min(k, len(on_topic)))
            after_picks[k].append(_next_issue_precision(index, "", profile, past, q.relevant))
            seen = upcoming | frozenset(on_topic[:k])
            *_, (_, voted) = _votes(index, "", q.relevant, seen, votes_after, profile=profile)
            after_votes[k].append(_next_issue_precision(index, "", voted, past, q.relevant))
    return {
        "readers": len(readers),
        "shown": shown,
        "picks_p@5": {str(k): statistics.mean(v) for k, v in after_picks.items()},
        f"picks_then_{votes_after}_votes_p@5": {str(k): statistics.mean(v) for k, v in after_votes.items()},
        "mean_ticked": {str(k): statistics.mean(v) for k, v in ticked.items()},
    }


# The learning tunables of RankingParams set back, one at a time, to what they were (or did)
# with plain Rocchio. "all of them" leaves only what no tunable undoes: liked and disliked
# papers are scored apart, each side normalised on its own.
ABLATIONS: dict[str, dict[str, float]] = {
    "liked words not expanded by lexicon": {"profile_expansion": 0.0},
    "40 terms per vote, not 100": {"profile_terms_per_vote": 40},
    "no slots kept for liked terms": {"profile_liked_share": 0.0},
    "dislikes move generic words too": {"profile_dislike_idf": 0.0},
    "disliked side weighs 0.5, not 0.25": {"profile_disliked_weight": 0.5},
    "vague interests keep full weight": {"stated_full_specificity": 0.0},
}
ABLATIONS["all of them"] = {k: v for values in ABLATIONS.values() for k, v in values.items()}


def ablation(papers: Sequence[PaperText], queries: Sequence[HiddenTopic], now: datetime) -> dict[str, Any]:
    """P@5 after 0, 1, 3 … votes as shipped and with each of ABLATIONS."""
    results = {"as shipped": simulate(papers, queries, now)["with_feedback_p@5"]}
    for label, values in ABLATIONS.items():
        params = replace(DEFAULT_PARAMS, **values)
        results[label] = simulate(papers, queries, now, params=params)["with_feedback_p@5"]
    return results


ONBOARDING_ABLATIONS: dict[str, dict[str, float]] = {
    "picker lists the most trending": {"picker_coverage": 0.0},
}


def onboarding_ablation(
    papers: Sequence[PaperText], queries: Sequence[HiddenTopic], now: datetime
) -> dict[str, Any]:
    """The onboarding simulation as shipped and with each of ONBOARDING_ABLATIONS."""
    results = {"as shipped": onboarding(papers, queries, now)}
    for label, values in ONBOARDING_ABLATIONS.items():
        results[label] = onboarding(papers, queries, now, params=replace(DEFAULT_PARAMS, **values))
    return results
