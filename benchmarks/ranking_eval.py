"""How well and how fast `newsletter.ranking` ranks papers for a reader's interests.

    python benchmarks/ranking_eval.py [--papers PATH] [--json] [--ablation]

Reports, over the labelled interests in benchmarks/data/ranking_eval.json:

* precision@5 and @10 for our ranking (with and without the trending blend), for trending
  order alone, and for textbook tf-idf cosine similarity;
* the time `rank_papers` takes per subscriber;
* a feedback simulation: readers with a hidden topic but a vague stated interest vote on the five
  papers of each issue, and we measure precision@5 of their next issue against that hidden topic;
  also for a variant, labelled as such, of readers who only ever click "more like this";
* with --ablation, the same simulation with each of the learning tunables set back to its
  earlier value (plain Rocchio), one at a time.

Upvotes are synthetic and deterministic (a hash of the title, as in the sample feed) because the
shared file has titles and abstracts only; publication dates are unknown, so trending is upvotes.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from newsletter.ranking import (
    DEFAULT_PARAMS,
    STOPWORDS,
    PaperIndex,
    PaperText,
    RankingParams,
    build_index,
    rank_papers,
    update_profile,
)

EVAL_PATH = REPO / "benchmarks" / "data" / "ranking_eval.json"
NOW = datetime(2025, 3, 14, tzinfo=UTC)  # the date of the captured trending page
FEEDBACK_VOTES = (0, 1, 3, 5, 10, 20)
FEEDBACK_MIN_RELEVANT = 5

Ranker = Callable[[str], list[int]]


@dataclass(frozen=True)
class EvalQuery:
    interests: str
    relevant: frozenset[int]
    vague_interest: str | None = None


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
        queries.append(EvalQuery(q["interests"], relevant, q.get("vague_interest")))
    return queries


# --- the baselines ------------------------------------------------------------------------------


class TfidfCosine:
    """Textbook tf-idf: raw term counts × ln(N / df), L2-normalised, ranked by cosine.

    Title and abstract are one text; lower-cased words, the same stop words as ours, no stemming.
    """

    def __init__(self, papers: Sequence[PaperText]):
        self.ids = [p.id for p in papers]
        counts = [Counter(self._words(f"{p.title} {p.abstract}")) for p in papers]
        df = Counter(term for c in counts for term in c)
        self.idf = {t: math.log(len(papers) / n) for t, n in df.items()}
        self.vectors = [self._vector(c) for c in counts]

    @staticmethod
    def _words(text: str) -> list[str]:
        return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        v = {t: n * self.idf.get(t, 0.0) for t, n in counts.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {t: x / norm for t, x in v.items()}

    def rank(self, interests: str) -> list[int]:
        q = self._vector(Counter(self._words(interests)))
        scores = [sum(w * doc.get(t, 0.0) for t, w in q.items()) for doc in self.vectors]
        order = sorted(range(len(self.ids)), key=lambda d: -scores[d])  # stable on ties
        return [self.ids[d] for d in order]


def rankers(papers: Sequence[PaperText], index: PaperIndex) -> dict[str, Ranker]:
    tfidf = TfidfCosine(papers)
    n = len(papers)
    by_trending = [it.paper_id for it in rank_papers(index, "", limit=n)]
    relevance_only = build_index(
        [PaperText(p.id, p.title, p.abstract, p.keywords) for p in papers], NOW
    )  # no upvotes: trending is 0 everywhere, so this measures relevance alone
    return {
        "ours": lambda q: [it.paper_id for it in rank_papers(index, q, limit=n)],
        "ours_relevance_only": lambda q: [it.paper_id for it in rank_papers(relevance_only, q, limit=n)],
        "tfidf_cosine": tfidf.rank,
        "trending_only": lambda _interests: by_trending,
    }


METHOD_NAMES = {
    "ours": "ours (relevance + trending)",
    "ours_relevance_only": "ours, relevance only",
    "tfidf_cosine": "tf-idf cosine",
    "trending_only": "trending only",
    "ceiling": "best possible",
}


# --- measures -----------------------------------------------------------------------------------


def precision_at(ranked: Sequence[int], relevant: frozenset[int], k: int) -> float:
    return sum(1 for pid in ranked[:k] if pid in relevant) / k


def evaluate(papers: Sequence[PaperText], queries: Sequence[EvalQuery]) -> dict[str, Any]:
    """Mean precision@5 and @10 per method, plus the best achievable (the ceiling)."""
    index = build_index(papers, NOW)
    results: dict[str, Any] = {}
    for name, rank in rankers(papers, index).items():
        runs = [rank(q.interests) for q in queries]
        results[name] = {
            f"p@{k}": statistics.mean(
                precision_at(r, q.relevant, k) for r, q in zip(runs, queries, strict=True)
            )
            for k in (5, 10)
        }
    results["ceiling"] = {
        f"p@{k}": statistics.mean(min(len(q.relevant), k) / k for q in queries) for k in (5, 10)
    }
    return results


def time_ranking(
    papers: Sequence[PaperText], queries: Sequence[EvalQuery], repeats: int = 30
) -> dict[str, float]:
    """Build time of the index, and µs per `rank_papers` call (limit 10), without and with a
    20-vote profile: the median over `repeats` passes through all queries, each call with a new
    interests string so that no cache helps."""
    started = time.perf_counter()
    index = build_index(papers, NOW)
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
    """Readers who teach the ranking their taste by voting, scored on papers they never saw.

    A reader has a hidden topic (the relevant set of an eval query with at least
    FEEDBACK_MIN_RELEVANT papers) and states only a vague interest: nothing, or the query's
    one-word `vague_interest`. The papers are split in two halves (odd / even position, used both
    ways round), standing for past issues and next week's issue. From the past half the reader
    gets issues of their top five unsent papers and votes on every shown paper, one at a time:
    +1 if it is in the hidden topic, -1 otherwise. After 0, 1, 3, 5 … votes we rank next week's
    half with the learned profile and report precision@5 against the hidden topic, beside the
    same reader without a profile and the best possible value.

    With `dislikes=False` the readers never click "less like this": they look at the same
    papers but only vote +1, and the checkpoints count papers looked at, not votes. The index is
    built with `params`, which ranking and voting then use.
    """
    index = build_index(papers, NOW, params)
    halves = [frozenset(p.id for p in papers[k::2]) for k in (0, 1)]
    readers = [
        (q, stated)
        for q in queries
        if len(q.relevant) >= FEEDBACK_MIN_RELEVANT
        for stated in dict.fromkeys(("", q.vague_interest or ""))
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
    return precision_at([it.paper_id for it in ranked], relevant, 5)


def _votes(
    index: PaperIndex,
    stated: str,
    relevant: frozenset[int],
    unseen: frozenset[int],
    limit: int,
    dislikes: bool = True,
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(votes cast, profile) after each vote, starting with (0, None); `unseen` is never shown.
    Without `dislikes`, a paper outside the topic gets no vote but still counts as judged."""
    profile: dict[str, Any] | None = None
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


def feedback_ablation(papers: Sequence[PaperText], queries: Sequence[EvalQuery]) -> dict[str, Any]:
    """P@5 after 0, 1, 3 … votes as shipped and with each of ABLATIONS."""
    results = {"as shipped": simulate_feedback(papers, queries)["with_feedback_p@5"]}
    for label, values in ABLATIONS.items():
        params = replace(DEFAULT_PARAMS, **values)
        results[label] = simulate_feedback(papers, queries, params=params)["with_feedback_p@5"]
    return results


# --- report -------------------------------------------------------------------------------------


def run(papers_path: Path | None = None, *, ablation: bool = False) -> dict[str, Any]:
    papers = load_papers(papers_path)
    queries = load_queries(papers)
    report = {
        "papers": len(papers),
        "queries": len(queries),
        "precision": evaluate(papers, queries),
        "timing": time_ranking(papers, queries),
        "feedback": simulate_feedback(papers, queries),
        "feedback_upvotes_only": simulate_feedback(papers, queries, dislikes=False),
    }
    if ablation:
        report["feedback_ablation"] = feedback_ablation(papers, queries)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"Ranking evaluation: {report['queries']} labelled interests, {report['papers']} papers")
    print()
    print(f"{'method':<30}{'P@5':>8}{'P@10':>8}")
    for name, row in report["precision"].items():
        print(f"{METHOD_NAMES[name]:<30}{row['p@5']:>8.3f}{row['p@10']:>8.3f}")
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
    if "feedback_ablation" in report:
        rows = report["feedback_ablation"]
        print()
        print("Ablation: P@5 after N votes with one learning tunable set back to its plain-Rocchio value")
        print(f"{'':<40}" + "".join(f"{n:>7}" for n in rows["as shipped"]))
        for label, row in rows.items():
            print(f"{label:<40}" + "".join(f"{p:>7.3f}" for p in row.values()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--papers", type=Path, default=None, help=f"papers JSON (default: {default_papers_path()})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--ablation", action="store_true", help="also rerun the feedback simulation per tunable"
    )
    args = parser.parse_args(argv)
    path = args.papers or default_papers_path()
    if not path.is_file():
        parser.error(f"papers file not found: {path} (pass --papers)")
    report = run(path, ablation=args.ablation)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
