"""Interests → ranked papers, with a human reason for each pick ("why this paper").

Pure functions: no database, no I/O. An issue builds one `PaperIndex` (`build_index`), then
`rank_papers` is called once per subscriber; "more / less like this" votes update a JSON
profile (`update_profile`) that later rankings mix in. The modules, bottom up:

* `params`: `RankingParams`, every tunable, passed to `build_index` and kept in the index;
* `text`: tokenising, stop words, stemming;
* `lexicon`: research-topic synonyms and related terms that expand a reader's words;
* `index`: the BM25F index of one issue's papers, and trending scores;
* `profile`: Rocchio profiles learned from votes;
* `picker`: which papers the onboarding picker offers;
* `score`: query expansion, relevance, the trending blend and the "why" of each pick.
"""

from newsletter.ranking.index import PaperIndex, PaperText, build_index, trending_score
from newsletter.ranking.params import DEFAULT_PARAMS, RankingParams
from newsletter.ranking.picker import picker_order
from newsletter.ranking.profile import describe_profile, has_liked, update_profile
from newsletter.ranking.score import RankedItem, rank_papers
from newsletter.ranking.text import STOPWORDS, stem

# The default caps, for callers that show or check them; to change them, pass RankingParams.
PROFILE_MAX_TERMS = DEFAULT_PARAMS.profile_max_terms
PROFILE_MAX_TITLES = DEFAULT_PARAMS.profile_max_titles

__all__ = [
    "DEFAULT_PARAMS",
    "PROFILE_MAX_TERMS",
    "PROFILE_MAX_TITLES",
    "STOPWORDS",
    "PaperIndex",
    "PaperText",
    "RankedItem",
    "RankingParams",
    "build_index",
    "describe_profile",
    "picker_order",
    "rank_papers",
    "stem",
    "trending_score",
    "has_liked",
    "update_profile",
]
