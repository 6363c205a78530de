"""How well and how fast `newsletter.ranking` ranks papers for a reader's interests.

    python benchmarks/ranking_eval.py [--papers PATH] [--json] [--ablation] [--embeddings MODEL_DIR]

Reports, over the labelled interests in benchmarks/data/ranking_eval.json:

* precision@5 and @10 on its "tune" part (what ranking changes are measured on) and on its
  "held_out" part (reported, never tuned on), for our ranking (with and without the trending
  blend), for trending order alone, for textbook tf-idf cosine similarity and, if scikit-learn
  is installed, for its default TfidfVectorizer (English stop words, sublinear tf, title twice);
* how far the two labellers agree on interests that ask for the same thing (Cohen's kappa);
* the time `rank_papers` takes per subscriber;
* a feedback simulation: readers with a hidden topic but a vague stated interest vote on the five
  papers of each issue, and we measure precision@5 of their next issue against that hidden topic;
  also for a variant, labelled as such, of readers who only ever click "more like this";
* with --ablation, precision with each retrieval idea switched off (RETRIEVAL_ABLATIONS), and the
  feedback simulation with each learning tunable set back to plain Rocchio, one at a time;
* with --embeddings, the dense-embedding extra (benchmarks/ranking_dense.py).

Upvotes are synthetic and deterministic (a hash of the title, as in the sample feed) because the
shared file has titles and abstracts only; publication dates are unknown, so trending is upvotes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from benchmarks import ranking_dense, ranking_feedback
from benchmarks.ranking_baselines import SklearnTfidf, TfidfCosine, sklearn_available
from benchmarks.ranking_feedback import FEEDBACK_VOTES, Embed, plain
from newsletter.ranking import (
    DEFAULT_PARAMS,
    PaperIndex,
    PaperText,
    RankingParams,
    build_index,
    rank_papers,
    update_profile,
)

EVAL_PATH = REPO / "benchmarks" / "data" / "ranking_eval.json"
NOW = datetime(2025, 3, 14, tzinfo=UTC)  # the date of the captured trending page

Ranker = Callable[[str], list[int]]


PARTS = ("tune", "held_out")
GROUPS = (*PARTS, "batch 1")  # precision is reported for each part, and for batch 1 (both parts)


@dataclass(frozen=True)
class EvalQuery:
    interests: str
    relevant: frozenset[int]
    vague_interest: str | None = None
    part: str = "tune"  # "tune" or "held_out"
    batch: int = 1  # 1: the first labeller's 24 interests (the figures), 2: the second's


# --- data ----------------------------------------------------------------------------------------


def default_papers_path() -> Path:
    """shared/data/trending-papers.json beside the repository, else the bundled sample feed.

    The sample feed (newsletter/data/sample_feed.json) carries the same 75 titles and abstracts,
    so a clone without ../shared measures the same thing.
    """
    shared = REPO.parent / "shared" / "data" / "trending-papers.json"
    return shared if shared.is_file() else REPO / "newsletter" / "data" / "sample_feed.json"


def synthetic_upvotes(title: str) -> int:
    """The sample feed's stand-in upvotes: the first 4 bytes of sha256(title), big-endian, mod 151."""
    return int.from_bytes(hashlib.sha256(title.encode()).digest()[:4], "big") % 151


def load_papers(path: Path | None = None) -> list[PaperText]:
    raw = json.loads((path or default_papers_path()).read_text(encoding="utf-8"))
    return [
        PaperText(
            id=i,
            title=p["title"].strip(),
            abstract=p.get("abstract", ""),
            upvotes=synthetic_upvotes(p["title"].strip()),
        )
        for i, p in enumerate(raw["papers"], start=1)
    ]


def load_queries(papers: Sequence[PaperText], path: Path = EVAL_PATH) -> list[EvalQuery]:
    ids = {p.title: p.id for p in papers}
    raw = json.loads(path.read_text(encoding="utf-8"))
    queries = []
    for q in raw["queries"]:
        missing = [t for t in q["relevant"] if t not in ids]
        if missing:
            raise ValueError(f"{q['interests']!r}: titles not in the papers file: {missing}")
        relevant = frozenset(ids[t] for t in q["relevant"])
        queries.append(EvalQuery(q["interests"], relevant, q.get("vague_interest"), q["part"], q["batch"]))
    return queries


def labeller_agreement(queries: Sequence[EvalQuery], n_papers: int, path: Path = EVAL_PATH) -> dict[str, Any]:
    """Cohen's kappa between the two labellers over the `agreement_pairs` (two interests that ask
    for the same thing, one from each batch), every (pair, paper) judgement pooled."""
    by_text = {q.interests: q.relevant for q in queries}
    pairs = json.loads(path.read_text(encoding="utf-8")).get("agreement_pairs", [])
    cells = Counter(
        (pid in by_text[a], pid in by_text[b]) for a, b in pairs for pid in range(1, n_papers + 1)
    )
    n = sum(cells.values()) or 1
    observed = (cells[True, True] + cells[False, False]) / n
    yes_a, yes_b = (cells[True, True] + cells[True, False]) / n, (cells[True, True] + cells[False, True]) / n
    expected = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    kappa = (observed - expected) / (1 - expected) if expected < 1 else 1.0
    return {
        "pairs": len(pairs),
        "agreement": observed,
        "kappa": kappa,
        "both": cells[True, True],
        "first_only": cells[True, False],
        "second_only": cells[False, True],
    }


# --- the baselines ------------------------------------------------------------------------------


def rankers(
    papers: Sequence[PaperText], index: PaperIndex, params: RankingParams = DEFAULT_PARAMS
) -> dict[str, Ranker]:
    n = len(papers)
    by_trending = [it.paper_id for it in rank_papers(index, "", limit=n)]
    relevance_only = build_index(
        [PaperText(p.id, p.title, p.abstract, p.keywords) for p in papers], NOW, params
    )  # no upvotes: trending is 0 everywhere, so this measures relevance alone
    found: dict[str, Ranker] = {
        "ours": lambda q: [it.paper_id for it in rank_papers(index, q, limit=n)],
        "ours_relevance_only": lambda q: [it.paper_id for it in rank_papers(relevance_only, q, limit=n)],
        "tfidf_cosine": TfidfCosine(papers).rank,
    }
    if sklearn_available():
        found["tfidf_sklearn"] = SklearnTfidf(papers).rank
    found["trending_only"] = lambda _interests: by_trending
    return found


METHOD_NAMES = {
    "ours": "ours (relevance + trending)",
    "ours_relevance_only": "ours, relevance only",
    "tfidf_cosine": "tf-idf cosine",
    "tfidf_sklearn": "sklearn TfidfVectorizer",
    "trending_only": "trending only",
    "ceiling": "best possible",
}


# --- measures -----------------------------------------------------------------------------------


def precision_at(ranked: Sequence[int], relevant: frozenset[int], k: int) -> float:
    return sum(1 for pid in ranked[:k] if pid in relevant) / k


def precision(runs: Sequence[Sequence[int]], queries: Sequence[EvalQuery]) -> dict[str, dict[str, float]]:
    """Mean precision@5 and @10 over each of GROUPS."""
    result = {}
    for group in GROUPS:
        pairs = [(r, q) for r, q in zip(runs, queries, strict=True) if group in (q.part, f"batch {q.batch}")]
        result[group] = {
            f"p@{k}": statistics.mean(precision_at(r, q.relevant, k) for r, q in pairs) for k in (5, 10)
        }
    return result


def evaluate(
    papers: Sequence[PaperText], queries: Sequence[EvalQuery], params: RankingParams = DEFAULT_PARAMS
) -> dict[str, Any]:
    """Per method, precision@5 and @10 per part (see `precision`), plus the best achievable."""
    index = build_index(papers, NOW, params)
    results = {
        name: precision([rank(q.interests) for q in queries], queries)
        for name, rank in rankers(papers, index, params).items()
    }
    results["ceiling"] = precision([sorted(q.relevant) for q in queries], queries)
    return results


def evaluate_ours(
    papers: Sequence[PaperText],
    queries: Sequence[EvalQuery],
    params: RankingParams = DEFAULT_PARAMS,
    embed: Embed = plain,
) -> dict[str, dict[str, float]]:
    """Precision of our ranking alone (relevance + trending), built with `params`."""
    index = embed(build_index(papers, NOW, params))
    return precision(
        [[it.paper_id for it in rank_papers(index, q.interests, limit=10)] for q in queries], queries
    )


def for_you_honesty(
    papers: Sequence[PaperText], queries: Sequence[EvalQuery], embed: Embed = plain
) -> dict[str, float]:
    """How well the digest's "For you" / "Also trending" split agrees with the labels, over each
    interest's top 10: the share of "For you" papers labelled relevant (precision), the share of
    "Also trending" ones labelled relevant, and the share of the relevant papers shown that are
    under "For you". `all_claimed` is the precision if every paper above `min_relevance` were
    called a match, as the "why" line did before the split."""
    index = embed(build_index(papers, NOW))
    cells: Counter[tuple[bool, bool]] = Counter()
    claimed: Counter[bool] = Counter()
    for q in queries:
        for it in rank_papers(index, q.interests, limit=10):
            cells[it.for_you, it.paper_id in q.relevant] += 1
            if it.relevance >= index.params.min_relevance:
                claimed[it.paper_id in q.relevant] += 1
    for_you, also = cells[True, True] + cells[True, False], cells[False, True] + cells[False, False]
    return {
        "for_you": for_you,
        "for_you_precision": cells[True, True] / max(for_you, 1),
        "also_trending_relevant": cells[False, True] / max(also, 1),
        "relevant_under_for_you": cells[True, True] / max(cells[True, True] + cells[False, True], 1),
        "all_claimed_precision": claimed[True] / max(sum(claimed.values()), 1),
    }


def time_ranking(
    papers: Sequence[PaperText], queries: Sequence[EvalQuery], repeats: int = 30, embed: Embed = plain
) -> dict[str, float]:
    """Build time of the index, and µs per `rank_papers` call (limit 10), without and with a
    20-vote profile: the median over `repeats` passes through all queries, each call with a new
    interests string so that no cache helps."""
    started = time.perf_counter()
    index = embed(build_index(papers, NOW))
    build_ms = (time.perf_counter() - started) * 1000
    profile: dict[str, Any] | None = None
    for p in papers[:20]:
        profile = update_profile(profile, index, p.id, 1 if p.id % 3 else -1)
    result: dict[str, float] = {"papers": len(papers), "build_index_ms": round(build_ms, 1)}
    for run, (name, prof) in enumerate((("rank_us", None), ("rank_with_profile_us", profile))):
        passes = []
        for i in range(repeats):
            started = time.perf_counter()
            for q in queries:
                # A trailing number is not a search term, but it makes every string new.
                rank_papers(index, f"{q.interests} {run}{i:06d}", profile=prof, limit=10)
            passes.append((time.perf_counter() - started) / len(queries))
        result[name] = round(statistics.median(passes) * 1e6, 1)
    return result


def simulate_feedback(
    papers: Sequence[PaperText],
    queries: Sequence[EvalQuery],
    checkpoints: Sequence[int] = FEEDBACK_VOTES,
    *,
    dislikes: bool = True,
    params: RankingParams = DEFAULT_PARAMS,
) -> dict[str, Any]:
    """The feedback simulation (benchmarks/ranking_feedback.py) on the issue of `NOW`."""
    return ranking_feedback.simulate(papers, queries, NOW, checkpoints, dislikes=dislikes, params=params)


# Each retrieval idea kept in RankingParams, switched off on its own: precision without it.
RETRIEVAL_ABLATIONS: dict[str, dict[str, Any]] = {
    "no hand-written lexicon": {"synonym_weight": 0.0, "related_weight": 0.0, "profile_expansion": 0.0},
    "no coverage bonus": {"coverage_weight": 0.0},
    "no bigram phrases": {"bigram_weight": 0.0},
    "title and keywords count as abstract": {"title_weight": 1.0, "keywords_weight": 1.0},
}


def retrieval_ablation(papers: Sequence[PaperText], queries: Sequence[EvalQuery]) -> dict[str, Any]:
    """Precision of our ranking as shipped and with each of RETRIEVAL_ABLATIONS."""
    rows = {"as shipped": evaluate_ours(papers, queries)}
    for label, values in RETRIEVAL_ABLATIONS.items():
        rows[label] = evaluate_ours(papers, queries, replace(DEFAULT_PARAMS, **values))
    return rows


# --- report -------------------------------------------------------------------------------------


def run(
    papers_path: Path | None = None, *, ablation: bool = False, embeddings: Path | None = None
) -> dict[str, Any]:
    papers = load_papers(papers_path)
    queries = load_queries(papers)
    report = {
        "papers": len(papers),
        "queries": {part: sum(q.part == part for q in queries) for part in PARTS},
        "precision": evaluate(papers, queries),
        "agreement": labeller_agreement(queries, len(papers)),
        "for_you": for_you_honesty(papers, queries),
        "timing": time_ranking(papers, queries),
        "feedback": simulate_feedback(papers, queries),
        "feedback_upvotes_only": simulate_feedback(papers, queries, dislikes=False),
        "onboarding": {
            "picker": ranking_feedback.onboarding(papers, queries, NOW),
            "whole_period": ranking_feedback.onboarding(papers, queries, NOW, shown=None),
        },
    }
    if ablation:
        report["retrieval_ablation"] = retrieval_ablation(papers, queries)
        report["feedback_ablation"] = ranking_feedback.ablation(papers, queries, NOW)
        report["onboarding_ablation"] = ranking_feedback.onboarding_ablation(papers, queries, NOW)
    if embeddings is not None:
        report["embeddings"] = ranking_dense.run(
            embeddings, papers, queries, NOW, evaluate_ours, for_you_honesty
        )
    return report


def _precision_table(rows: dict[str, dict[str, dict[str, float]]], names: dict[str, str]) -> None:
    print(f"{'':<36}{'tune':>14}{'held out':>16}{'batch 1':>16}")
    print(f"{'method':<36}" + f"{'P@5':>8}{'P@10':>8}" * len(GROUPS))
    for name, row in rows.items():
        cells = "".join(f"{row[group][k]:>8.3f}" for group in GROUPS for k in ("p@5", "p@10"))
        print(f"{names.get(name, name):<36}{cells}")


def print_report(report: dict[str, Any]) -> None:
    n = report["queries"]
    print(
        f"Ranking evaluation: {n['tune']} tuning + {n['held_out']} held-out labelled interests, "
        f"{report['papers']} papers"
    )
    print()
    _precision_table(report["precision"], METHOD_NAMES)
    a = report["agreement"]
    print(
        f"\nLabellers: {a['pairs']} pairs of interests asking for the same thing agree on "
        f"{a['agreement']:.1%} of (pair, paper) judgements, Cohen's kappa {a['kappa']:.2f} "
        f"(relevant to both {a['both']}, to the first only {a['first_only']}, to the second only "
        f"{a['second_only']})"
    )
    h = report["for_you"]
    print(
        f'\n"For you" (digest headings): {h["for_you"]} papers in the top 10s, '
        f"{h['for_you_precision']:.1%} labelled relevant (against {h['all_claimed_precision']:.1%} if every "
        f'paper above min_relevance were claimed as a match); "Also trending": '
        f"{h['also_trending_relevant']:.1%} relevant; {h['relevant_under_for_you']:.1%} of the relevant "
        'papers shown are under "For you"'
    )
    t = report["timing"]
    print()
    print(f"build_index: {t['build_index_ms']:.1f} ms for {int(t['papers'])} papers")
    print(
        f"rank_papers: {t['rank_us']:.0f} µs per subscriber "
        f"({t['rank_with_profile_us']:.0f} µs with a 20-vote profile)"
    )
    f = report["feedback"]
    print()
    print(
        f"Feedback: {f['readers']} readers with a hidden topic and a vague stated interest vote "
        "on past issues;"
    )
    print("P@5 of next week's issue (papers they never saw) against the hidden topic")
    print(f"{'votes':<8}{'with feedback':>14}{'without':>10}{'best possible':>15}")
    for votes, p in f["with_feedback_p@5"].items():
        print(f"{votes:<8}{p:>14.3f}{f['without_feedback_p@5']:>10.3f}{f['ceiling_p@5']:>15.3f}")
    u = report["feedback_upvotes_only"]
    print()
    print(
        'Variant: the same readers, but they only click "more like this" (no -1 votes); '
        "P@5 after N papers seen:"
    )
    print("  ".join(f"{n}: {p:.3f}" for n, p in u["with_feedback_p@5"].items()))
    _print_onboarding(report["onboarding"])
    if "retrieval_ablation" in report:
        print("\nAblation: our ranking with one retrieval idea switched off")
        _precision_table(report["retrieval_ablation"], {})
    if "feedback_ablation" in report:
        rows = report["feedback_ablation"]
        print()
        print("Ablation: P@5 after N votes with one learning tunable set back to its plain-Rocchio value")
        print(f"{'':<40}" + "".join(f"{n:>7}" for n in rows["as shipped"]))
        for label, row in rows.items():
            print(f"{label:<40}" + "".join(f"{p:>7.3f}" for p in row.values()))
    if "onboarding_ablation" in report:
        print("\nAblation: onboarding P@5 after N ticks of the 20 listed (then +5 votes)")
        for label, run in report["onboarding_ablation"].items():
            cells = "  ".join(
                f"{k}: {p:.3f} ({run['picks_then_5_votes_p@5'][k]:.3f})" for k, p in run["picks_p@5"].items()
            )
            print(f"{label:<40}{cells}")
    if "embeddings" in report:
        ceiling = report["precision"]["ceiling"]
        ranking_dense.print_report(report["embeddings"], ceiling, _precision_table)


def _print_onboarding(runs: dict[str, Any]) -> None:
    print("\nOnboarding by example: readers with no stated interests tick papers of this period at")
    print("signup; P@5 of next week's issue against their hidden topic")
    print(f"{'ticked':<8}{'of 20 listed':>14}{'+5 votes':>10}{'of all listed':>15}{'+5 votes':>10}")
    picker, whole = runs["picker"], runs["whole_period"]
    for k, p in picker["picks_p@5"].items():
        cells = (
            p,
            picker["picks_then_5_votes_p@5"][k],
            whole["picks_p@5"][k],
            whole["picks_then_5_votes_p@5"][k],
        )
        print(f"{k:<8}" + "".join(f"{c:>{w}.3f}" for c, w in zip(cells, (14, 10, 15, 10), strict=True)))
    print(f"(papers actually ticked, of 20 listed: {picker['mean_ticked']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--papers", type=Path, default=None, help=f"papers JSON (default: {default_papers_path()})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--ablation", action="store_true", help="also rerun the feedback simulation per tunable"
    )
    parser.add_argument(
        "--embeddings", type=Path, default=None, help="a sentence-transformers model folder (make model)"
    )
    args = parser.parse_args(argv)
    path = args.papers or default_papers_path()
    if not path.is_file():
        parser.error(f"papers file not found: {path} (pass --papers)")
    report = run(path, ablation=args.ablation, embeddings=args.embeddings)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
