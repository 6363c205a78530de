"""Query expansion that the ranking learns from the issue's own papers (newsletter.ranking.expand)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from newsletter.ranking import DEFAULT_PARAMS, TRENDING_WHY, PaperText, build_index, rank_papers

NOW = datetime(2025, 3, 14, 12, tzinfo=UTC)


def _paper(pid: int, title: str, abstract: str, upvotes: int = 10) -> PaperText:
    return PaperText(pid, title, abstract, upvotes=upvotes, published_at=NOW)


# Three papers say "weather forecasting" and talk about atmospheric reanalysis and ensembles; a
# fourth talks about the same things without the reader's words; the rest are about other things.
# All are equally popular, so trending decides nothing between them.
WEATHER = [
    _paper(
        1,
        "Weather Forecasting with Graph Networks",
        "Weather forecasting trained on atmospheric reanalysis ensembles.",
    ),
    _paper(
        2,
        "Global Weather Forecasting",
        "Medium-range weather forecasting from atmospheric reanalysis, ensembles.",
    ),
    _paper(
        3, "Probabilistic Weather Forecasting", "Weather forecasting as atmospheric reanalysis ensembles."
    ),
    _paper(4, "Reanalysis at Kilometre Scale", "Atmospheric reanalysis ensembles downscaled by diffusion."),
    _paper(5, "Protein Folding with Transformers", "Transformers predict protein structure."),
    _paper(
        6, "Speech Recognition for Low-Resource Languages", "Acoustic models for languages with little data."
    ),
    _paper(7, "Learned Image Compression", "Autoencoders compress photos better than JPEG."),
]


def test_papers_that_say_the_same_in_other_words_come_up_with_pseudo_relevance_feedback():
    index = build_index(WEATHER, NOW)
    ranked = rank_papers(index, "weather forecasting", limit=7)
    assert {item.paper_id for item in ranked[:3]} == {1, 2, 3}
    assert ranked[3].paper_id == 4
    assert ranked[3].relevance > 0 and ranked[3].why != TRENDING_WHY
    without = build_index(WEATHER, NOW, replace(DEFAULT_PARAMS, prf_weight=0.0))
    assert rank_papers(without, "weather forecasting", limit=7)[3].relevance == 0  # it matched nothing


def test_pseudo_relevance_feedback_waits_for_enough_matches():
    """One or two matching papers say more about their own topic than about the reader's."""
    index = build_index(WEATHER, NOW)
    ranked = [item.paper_id for item in rank_papers(index, "protein", limit=7)]
    assert ranked == [5, 1, 2, 3, 4, 6, 7]  # then the trending order (equal upvotes: index order)


def test_the_lexicon_can_be_switched_off_for_the_ablation():
    papers = [
        _paper(1, "Large Language Model Agents", "Agents built on a large language model."),
        *WEATHER[4:],
    ]
    index = build_index(papers, NOW)
    assert rank_papers(index, "LLM", limit=1)[0].relevance > 0
    off = replace(DEFAULT_PARAMS, synonym_weight=0.0, related_weight=0.0, prf_weight=0.0)
    assert all(item.relevance == 0 for item in rank_papers(index, "LLM", params=off))
