"""The dense-embedding extra measured: `benchmarks/ranking_eval.py --embeddings MODEL_DIR`.

Reports, with the model's vectors of the eval's papers (title and abstract; encoded once, as the
service stores them):

* encode time for the papers and per interest string, and `rank_papers` µs per reader with the
  interests' vector already cached (the service encodes each distinct string once per process);
* precision of the shipped fusion (`DenseParams()`) against the lexical ranking, per part;
* the fusion ablation: dense alone, linear fusion and reciprocal rank fusion at several weights
  (the weight is picked on the tune part only), and the "For you" honesty figure per threshold;
* the feedback and onboarding simulations with the liked titles' similarity mixed in (max or
  centroid; the mean of cosines ranks exactly as the centroid), at several weights, and the
  onboarding with a picker that lists the whole period.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import ranking_feedback
from benchmarks.ranking_feedback import Embed, plain
from newsletter.ranking import PaperIndex, PaperText, build_index, rank_papers
from newsletter.ranking.dense import SentenceEncoder, model_dir
from newsletter.ranking.semantic import DenseParams, with_embeddings

OFF = DenseParams(stated_weight=0.0, liked_weight=0.0, for_you_cosine=None)
FUSIONS = [
    ("dense only (weight 1)", DenseParams(stated_weight=1.0, liked_weight=0.0, for_you_cosine=None)),
    *(
        (f"{fusion} fusion, weight {w}", DenseParams(stated_weight=w, fusion=fusion, liked_weight=0.0))
        for fusion in ("linear", "rrf")
        for w in (0.1, 0.2, 0.3, 0.4, 0.5)
    ),
]
FOR_YOU_COSINES = (None, 0.4, 0.5, 0.6)
LIKED = [
    (f"liked {mode}, weight {w}", replace(OFF, liked_weight=w, liked_mode=mode))
    for mode in ("max", "centroid")
    for w in (0.3, 0.5, 0.7, 1.0)
]


def embedder(encoder: SentenceEncoder, vectors: Any, params: DenseParams) -> Embed:
    return lambda index: with_embeddings(index, vectors, encoder.encode_query, params)


def encode_papers(encoder: SentenceEncoder, papers: Sequence[PaperText]) -> tuple[Any, float]:
    started = time.perf_counter()
    vectors = encoder.encode([f"{p.title.strip()}. {p.abstract.strip()}" for p in papers])
    return vectors, time.perf_counter() - started


def timing(
    encoder: SentenceEncoder, index: PaperIndex, queries: Sequence[Any], seconds: float
) -> dict[str, float]:
    """Encode times, and the median µs of `rank_papers` per reader over 10 passes through the
    interests, with embeddings and without (`index` stripped of them), the same strings (their
    parsed query and vector cached) either way."""
    started = time.perf_counter()
    for q in queries:
        encoder.encode([q.interests])
    per_query = (time.perf_counter() - started) / len(queries)
    result = {"encode_papers_s": round(seconds, 2), "encode_query_ms": round(per_query * 1000, 1)}
    for name, ranked in (("rank_us_cached_query", index), ("rank_us_lexical", replace(index, dense=None))):
        for q in queries:  # warm the caches, as a sender's second reader with these words finds them
            rank_papers(ranked, q.interests, limit=10)
        passes = []
        for _ in range(10):
            started = time.perf_counter()
            for q in queries:
                rank_papers(ranked, q.interests, limit=10)
            passes.append((time.perf_counter() - started) / len(queries))
        result[name] = round(statistics.median(passes) * 1e6, 1)
    return result


def run(
    path: Path, papers: Sequence[PaperText], queries: Sequence[Any], now: Any, evaluate: Any, honesty: Any
) -> dict[str, Any]:
    """Every figure above; `evaluate` and `honesty` are ranking_eval's evaluate_ours and
    for_you_honesty (passed in: ranking_eval imports this module)."""
    encoder = SentenceEncoder(model_dir(str(path)))
    vectors, seconds = encode_papers(encoder, papers)
    shipped = embedder(encoder, vectors, DenseParams())
    report: dict[str, Any] = {"model": encoder.name, "papers": len(papers)}
    report["timing"] = timing(encoder, shipped(build_index(papers, now)), queries, seconds)
    report["precision"] = {
        "lexical": evaluate(papers, queries, embed=plain),
        "with embeddings": evaluate(papers, queries, embed=shipped),
    }
    report["fusion"] = {
        label: evaluate(papers, queries, embed=embedder(encoder, vectors, p)) for label, p in FUSIONS
    }
    report["for_you"] = {
        str(c): honesty(
            papers, queries, embed=embedder(encoder, vectors, replace(DenseParams(), for_you_cosine=c))
        )
        for c in FOR_YOU_COSINES
    }
    report["feedback"] = {}
    report["onboarding"] = {}
    report["onboarding_whole_period"] = {}
    for label, params in [("lexical", OFF), *LIKED, ("shipped", DenseParams())]:
        embed = embedder(encoder, vectors, params)
        report["feedback"][label] = ranking_feedback.simulate(papers, queries, now, embed=embed)[
            "with_feedback_p@5"
        ]
        onboarding = ranking_feedback.onboarding(papers, queries, now, embed=embed)
        if label in ("lexical", "shipped"):  # the picker listing every paper of the period
            whole = ranking_feedback.onboarding(papers, queries, now, shown=None, embed=embed)
            report["onboarding_whole_period"][label] = {
                "picks": whole["picks_p@5"],
                "+5 votes": whole["picks_then_5_votes_p@5"],
            }
        report["onboarding"][label] = {
            "picks": onboarding["picks_p@5"],
            "+5 votes": onboarding["picks_then_5_votes_p@5"],
        }
    return report


def print_report(report: dict[str, Any], ceiling: dict[str, dict[str, float]], table: Any) -> None:
    t = report["timing"]
    print(
        f"\nEmbeddings ({report['model']}): {report['papers']} papers encoded in "
        f"{t['encode_papers_s']:.1f} s, "
        f"{t['encode_query_ms']:.0f} ms per interest string; rank_papers {t['rank_us_cached_query']:.0f} µs "
        f"per reader with the interests' vector cached ({t['rank_us_lexical']:.0f} µs without embeddings)"
    )
    rows = {**report["precision"], "best possible": ceiling}
    table(rows, {})
    print(
        "P@5 / best possible: "
        + ", ".join(
            f"{name}: " + " ".join(f"{g} {row[g]['p@5'] / ceiling[g]['p@5']:.2f}" for g in ceiling)
            for name, row in report["precision"].items()
        )
    )
    print("\nFusion ablation (stated interests; the weight is chosen on the tune part)")
    table(report["fusion"], {})
    print('\n"For you" with dense reasons, by cosine threshold (None: lexical reasons only)')
    for c, h in report["for_you"].items():
        print(
            f"  {c:<6} {h['for_you']:>4} papers, {h['for_you_precision']:.1%} relevant; "
            f"{h['relevant_under_for_you']:.1%} of relevant shown are under For you"
        )
    print("\nLiked papers: feedback simulation P@5 after N votes | onboarding P@5 after k picks (+5 votes)")
    for label, row in report["feedback"].items():
        o = report["onboarding"][label]
        print(
            f"  {label:<26}"
            + "".join(f"{p:>7.3f}" for p in row.values())
            + "  |"
            + "".join(f"{p:>7.3f}" for p in o["picks"].values())
            + "  +5:"
            + "".join(f"{p:>7.3f}" for p in o["+5 votes"].values())
        )
    print("Onboarding with every paper of the period listed: P@5 after k picks (+5 votes)")
    for label, o in report["onboarding_whole_period"].items():
        picks, voted = (" ".join(f"{p:.3f}" for p in o[k].values()) for k in ("picks", "+5 votes"))
        print(f"  {label:<26}{picks}  +5: {voted}")
