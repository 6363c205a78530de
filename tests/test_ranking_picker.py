"""The onboarding picker: which papers a reader who told us nothing is offered to tick, and what
their ticks do to the next issue (pure functions; the pages are in test_onboarding.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from newsletter.ranking import (
    DEFAULT_PARAMS,
    PaperText,
    build_index,
    picker_order,
    rank_papers,
    update_profile,
)
from tests.test_ranking import _benchmark

NOW = datetime(2025, 3, 14, 12, tzinfo=UTC)

TOPICS = {
    "weather": (
        "Weather Forecasting with Graph Networks",
        "Global Medium-Range Weather Forecasting",
        "Probabilistic Weather Forecasting from Reanalysis",
        "Weather Forecasting Ensembles at Kilometre Scale",
        "Nowcasting Precipitation for Weather Forecasting",
        "Learned Weather Forecasting Beats Numerical Models",
    ),
    "protein": (
        "Protein Structure Prediction with Transformers",
        "Protein Folding from Sequence Alone",
    ),
    "speech": (
        "Speech Recognition for Low-Resource Languages",
        "Acoustic Models for Speech Recognition with Little Data",
    ),
    "compression": (
        "Learned Image Compression with Autoencoders",
        "Neural Image Compression Beats JPEG",
    ),
}
ABSTRACTS = {
    "weather": "Weather forecasting trained on atmospheric reanalysis ensembles of past weather.",
    "protein": "We predict protein structure and folding from amino acid sequences of proteins.",
    "speech": "Speech recognition with acoustic models for languages with little transcribed speech.",
    "compression": "Image compression with learned autoencoders and entropy coding of images.",
}


def _period(first_id: int, upvotes: dict[str, int], published: datetime) -> list[PaperText]:
    papers, pid = [], first_id
    for topic, titles in TOPICS.items():
        for title in titles:
            papers.append(
                PaperText(pid, title, ABSTRACTS[topic], upvotes=upvotes[topic], published_at=published)
            )
            pid += 1
    return papers


def _topic(index, paper_id: int) -> str:
    title = index.papers[index.positions[paper_id]].title
    return next(topic for topic, titles in TOPICS.items() if title in titles)


# Weather trends far above everything else, as one busy topic often does.
THIS_WEEK = _period(1, {"weather": 150, "protein": 5, "speech": 4, "compression": 3}, NOW)


def test_the_picker_offers_every_topic_of_the_period_not_only_the_trending_one():
    index = build_index(THIS_WEEK, NOW)
    listed = picker_order(index, 4)
    assert sorted(_topic(index, pid) for pid in listed) == sorted(TOPICS)
    trending = build_index(THIS_WEEK, NOW, replace(DEFAULT_PARAMS, picker_coverage=0.0))
    assert {_topic(trending, pid) for pid in picker_order(trending, 4)} == {"weather"}  # the ablation


def test_the_picker_offers_only_the_candidates_and_at_most_the_limit():
    index = build_index(THIS_WEEK, NOW)
    speech_and_protein = {p.id for p in THIS_WEEK if _topic(index, p.id) in ("speech", "protein")}
    listed = picker_order(index, 10, candidates=speech_and_protein)
    assert sorted(listed) == sorted(speech_and_protein)
    assert len(picker_order(index, 3)) == 3
    assert picker_order(index, 0) == [] and picker_order(build_index([], NOW), 5) == []


def test_a_reader_who_ticks_papers_on_a_topic_gets_that_topic_first_next_week():
    index = build_index(THIS_WEEK, NOW)
    ticked = [pid for pid in picker_order(index, 8) if _topic(index, pid) == "protein"]
    assert ticked, "the picker offers the small topic"
    profile = None
    for pid in ticked:
        profile = update_profile(profile, index, pid, 1)
    later = NOW + timedelta(days=7)
    next_week = build_index(
        _period(101, {"weather": 150, "protein": 2, "speech": 60, "compression": 60}, later), later
    )
    first = rank_papers(next_week, "", profile=profile, limit=2)
    assert [_topic(next_week, it.paper_id) for it in first] == ["protein", "protein"]
    assert all(it.for_you and "Because you liked" in it.why for it in first)
    untouched = rank_papers(next_week, "", limit=2)  # a reader who ticked nothing: trending
    assert [_topic(next_week, it.paper_id) for it in untouched] == ["weather", "weather"]


def test_simulated_readers_find_more_of_their_topic_to_tick_than_in_the_trending_list():
    bench = _benchmark()
    papers = bench.load_papers()
    runs = bench.ranking_feedback.onboarding_ablation(papers, bench.load_queries(papers), bench.NOW)
    shipped, trending = runs["as shipped"], runs["picker lists the most trending"]
    assert shipped["mean_ticked"]["3"] > trending["mean_ticked"]["3"]
    assert shipped["picks_p@5"]["3"] > trending["picks_p@5"]["3"]
    assert shipped["picks_p@5"]["3"] >= shipped["picks_p@5"]["0"] + 0.25  # ticks teach the ranking
