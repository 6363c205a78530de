"""Every tunable of the ranking, in one frozen `RankingParams`.

`build_index(papers, now, params=...)` keeps the params in the index it returns, and
`rank_papers` and `update_profile` use the index's params unless given others, so an experiment
is `build_index(papers, now, params=dataclasses.replace(DEFAULT_PARAMS, bm25_k1=1.5))`.
`benchmarks/ranking_eval.py` measures what the defaults give (labelled interests, tune part:
P@5 0.640, P@10 0.377; held-out part: 0.556, 0.333), and with `--ablation` what each retrieval
idea and each learning tunable adds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RankingParams:
    """The ranking's tunables; hashable, so caches can be keyed on them."""

    # --- trending ---
    trending_half_life_days: float = 3.0  # a paper's trending score halves every 3 days
    trending_upvotes_half: int = 30  # 30 upvotes give half of the maximum popularity
    trending_unknown_age: float = 0.5  # decay factor used when the publication date is unknown
    trending_weight: float = 0.15  # share of trending in the final score; relevance gets the rest
    trending_comment_weight: float = 1.0  # a comment on the paper's page counts as one upvote
    trending_stars_weight: float = 1.0  # code stars count as log2(1 + stars) upvotes

    # --- BM25F relevance to the stated interests ---
    title_weight: float = 3.0  # a title match counts three times an abstract match
    keywords_weight: float = 2.0
    abstract_weight: float = 1.0
    title_length_norm: float = 0.3  # BM25 "b" per field
    keywords_length_norm: float = 0.3
    abstract_length_norm: float = 0.75
    bm25_k1: float = 1.2
    bigram_weight: float = 1.0  # query weight of a bigram relative to a single word
    synonym_weight: float = 0.9  # an expansion that means the same thing ("rl" → "reinforcement learning")
    related_weight: float = 0.35  # an expansion that is merely close ("robot" → "manipulation")
    coverage_weight: float = 0.5  # a paper covering none of the reader's words loses half its score

    # --- learning from votes ---
    # Feedback simulation (P@5 of the next issue after 0/1/3/5/10/20 votes, vague readers; no
    # votes 0.208, best possible 0.658): 0.208 0.237 0.254 0.271 0.358 0.413 with these values,
    # 0.208 0.212 0.221 0.246 0.279 0.346 with plain Rocchio. Readers without votes rank the same
    # either way. The lexicon expansion and 100 terms per vote matter most.
    profile_max_terms: int = 200
    profile_max_weight: float = 100.0  # votes keep |weight| under 1 / (1 - profile_decay) = 20
    profile_max_titles: int = 10  # at least onboarding.MAX_PICKS: every pick of a signup stays liked
    profile_terms_per_vote: int = 100  # a vote moves the profile along the paper's 100 strongest terms
    profile_liked_share: float = 2 / 3  # liked terms may keep 2/3 of the slots: dislikes can't evict them
    profile_like: float = 1.0  # Rocchio beta: weight of a "more like this" paper
    profile_dislike: float = 0.5  # Rocchio gamma: weight of a "less like this" paper
    # A dislike moves a term by (idf / idf of a one-paper word) ** this: the disliked paper's
    # distinctive words, hardly the generic ones most papers share (0 = all alike).
    profile_dislike_idf: float = 1.0
    # Resembling disliked papers costs 1/4 of what resembling liked ones earns; each side is
    # normalised on its own, so many dislikes cannot drown one like.
    profile_disliked_weight: float = 0.25
    profile_expansion: float = 1.0  # liked words bring in their lexicon synonyms / related terms (0 = off)
    profile_decay: float = 0.95  # older votes fade a little with each new one
    profile_full_votes: int = 3  # after 3 votes the profile counts as much as specific stated interests
    # Stated interests hold their own against liked papers only if their words are specific:
    # summed idf / idf of a one-paper word ("learning" ≈ 0.02, "robots" ≈ 0.3, "offline RL"
    # ≈ 0.9); vaguer ones yield to the profile (0 = always hold their own).
    stated_full_specificity: float = 1.0

    # --- the onboarding picker (picker.py) ---
    # 1: list the papers that between them resemble the whole period most (facility location);
    # 0: the most trending. Simulated readers who tick 3 papers: P@5 0.417 against 0.333.
    picker_coverage: float = 1.0

    # --- explanations and input limits ---
    match_shown_share: float = 0.15  # a matched word is named only if it counts for 15% of the best one
    min_relevance: float = 0.05  # below this a paper is shown for trending, not for the reader's interests
    # "For you" needs a good match (score._good_match): of one of the reader's topics (words written
    # together), words carrying this share of its idf weight, with two of its words, its most
    # specific one among them ("neural networks" carried 0.67 of "graph neural networks") …
    match_topic_share: float = 0.7
    match_alone_share: float = 0.85  # … or this share with one word (a one-word topic: that word)
    liked_match_share: float = 0.6  # "Because you liked": this share of the best liked likeness
    match_min_specificity: float = 0.15  # and not only generic words ("learning" ≈ 0.02, "robots" ≈ 0.3)
    max_interest_chars: int = 2_000  # a subscriber's free text beyond this is ignored
    max_field_chars: int = 20_000

    def fields(self) -> dict[str, tuple[float, float]]:
        """Per indexed field: (weight of a match, BM25 "b" length normalisation)."""
        return {
            "title": (self.title_weight, self.title_length_norm),
            "keywords": (self.keywords_weight, self.keywords_length_norm),
            "abstract": (self.abstract_weight, self.abstract_length_norm),
        }


DEFAULT_PARAMS = RankingParams()
