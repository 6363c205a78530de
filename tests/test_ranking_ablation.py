"""Retrieval ideas that the ranking eval's ablation switches off one at a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from newsletter.ranking import DEFAULT_PARAMS, PaperText, build_index, rank_papers

NOW = datetime(2025, 3, 14, 12, tzinfo=UTC)


def _paper(pid: int, title: str, abstract: str, upvotes: int = 10) -> PaperText:
    return PaperText(pid, title, abstract, upvotes=upvotes, published_at=NOW)


# Papers on unrelated topics, equally popular, so trending decides nothing between them.
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


def test_the_lexicon_can_be_switched_off_for_the_ablation():
    papers = [
        _paper(1, "Large Language Model Agents", "Agents built on a large language model."),
        *WEATHER[4:],
    ]
    index = build_index(papers, NOW)
    assert rank_papers(index, "LLM", limit=1)[0].relevance > 0
    off = replace(DEFAULT_PARAMS, synonym_weight=0.0, related_weight=0.0)
    assert all(item.relevance == 0 for item in rank_papers(index, "LLM", params=off))
