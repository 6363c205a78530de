"""The baselines `benchmarks/ranking_eval.py` compares our ranking with: two kinds of tf-idf."""

from __future__ import annotations

import importlib.util
import math
import re
from collections import Counter
from collections.abc import Sequence

from newsletter.ranking import STOPWORDS, PaperText


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


class SklearnTfidf:
    """scikit-learn's TfidfVectorizer as most people would first try it: English stop words,
    sublinear tf, the title counted twice, ranked by cosine (the rows are L2-normalised)."""

    def __init__(self, papers: Sequence[PaperText]):
        from sklearn.feature_extraction.text import TfidfVectorizer  # optional: only this baseline

        self.ids = [p.id for p in papers]
        self.vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
        self.docs = self.vectorizer.fit_transform(f"{p.title} {p.title} {p.abstract}" for p in papers)

    def rank(self, interests: str) -> list[int]:
        scores = (self.docs @ self.vectorizer.transform([interests]).T).toarray().ravel()
        order = sorted(range(len(self.ids)), key=lambda d: -scores[d])  # stable on ties
        return [self.ids[d] for d in order]


def sklearn_available() -> bool:
    return importlib.util.find_spec("sklearn") is not None
