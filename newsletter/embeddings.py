"""Paper embeddings, when NEWSLETTER_EMBEDDING_MODEL names a model: computed once per paper
and model, stored in `paper_embedding`, and given to an issue's ranking index.

The ingest stores the vectors of the papers it brought in (`store_new_vectors`); an issue's
renderer loads its papers' vectors and computes, and stores, only those still missing
(`embed_index`), so workers do not encode papers again. Interests and liked titles are
encoded per process (`SentenceEncoder.encode_query`, a bounded cache). Without a model every
function here leaves things as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlmodel import Session, col, select

from newsletter.config import Settings
from newsletter.db import insert_ignore
from newsletter.models import Paper, PaperEmbedding, saved_id, table_of, utcnow
from newsletter.ranking import PaperIndex
from newsletter.ranking.dense import SentenceEncoder, model_dir
from newsletter.ranking.semantic import with_embeddings

RECENT_DAYS = 14  # the ingest encodes papers published this recently (what issues will rank)


@lru_cache(maxsize=2)
def _encoder(setting: str) -> SentenceEncoder:
    return SentenceEncoder(model_dir(setting))


def encoder_for(settings: Settings) -> SentenceEncoder | None:
    """The configured model, loaded once per process; None when embeddings are off."""
    return _encoder(settings.embedding_model) if settings.embedding_model else None


def paper_text_for_embedding(paper: Paper) -> str:
    return f"{paper.title.strip()}. {paper.abstract.strip()}"


def paper_vectors(session: Session, encoder: SentenceEncoder, papers: Sequence[Paper]) -> Any:
    """The papers' vectors (numpy, one row per paper, in order): the stored ones, and the
    missing ones encoded and added to the session (the caller commits)."""
    import numpy as np

    ids = [saved_id(p) for p in papers]
    found = session.exec(
        select(PaperEmbedding).where(
            PaperEmbedding.model == encoder.name, col(PaperEmbedding.paper_id).in_(ids)
        )
    )
    stored = {r.paper_id: np.frombuffer(r.vector, dtype="<f4") for r in found}
    missing = list({saved_id(p): p for p in papers if saved_id(p) not in stored}.values())
    if missing:
        vectors = encoder.encode([paper_text_for_embedding(p) for p in missing])
        rows: list[dict[str, Any]] = [
            {"paper_id": saved_id(p), "model": encoder.name, "vector": v.astype("<f4").tobytes()}
            for p, v in zip(missing, vectors, strict=True)
        ]
        stored |= {row["paper_id"]: v for row, v in zip(rows, vectors, strict=True)}
        # Two workers building one issue's renderer at once both encode; the second insert is a no-op.
        dialect = session.get_bind().dialect.name
        session.execute(insert_ignore(table_of(PaperEmbedding), dialect).values(rows))
    if not ids:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([stored[i] for i in ids]).astype(np.float32)


def embed_index(
    session: Session, settings: Settings, index: PaperIndex, papers: Sequence[Paper]
) -> PaperIndex:
    """`index` with the vectors of its papers (found in `papers` by id), when a model is set."""
    encoder = encoder_for(settings)
    if encoder is None or not index.papers:
        return index
    by_id = {saved_id(p): p for p in papers}
    ordered = [by_id[p.id] for p in index.papers]
    return with_embeddings(index, paper_vectors(session, encoder, ordered), encoder.encode_query)


def store_new_vectors(session: Session, settings: Settings) -> int:
    """At ingest: encode and store the recent papers that have no vector for the model yet;
    return how many."""
    encoder = encoder_for(settings)
    if encoder is None:
        return 0
    have = select(PaperEmbedding.paper_id).where(PaperEmbedding.model == encoder.name)
    papers = list(
        session.exec(
            select(Paper).where(
                col(Paper.published_at) >= utcnow() - timedelta(days=RECENT_DAYS),
                col(Paper.id).not_in(have),
            )
        )
    )
    paper_vectors(session, encoder, papers)
    return len(papers)
