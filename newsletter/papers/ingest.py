"""Store records as `Paper` rows, one row per paper however often and from wherever it arrives."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, col, select

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.embeddings import store_new_vectors
from newsletter.models import Paper, utcnow
from newsletter.papers.arxiv import fetch_arxiv
from newsletter.papers.base import (
    ENRICHED_FIELDS,
    LINK_FIELDS,
    FetchLimits,
    PaperRecord,
    SourceResult,
    as_utc,
    title_key,
)
from newsletter.papers.file import read_feed
from newsletter.papers.huggingface import fetch_daily_papers

_IN_CHUNK = 500  # stays under SQLite's bound-parameter limit
_SOURCES = ("file", "huggingface", "arxiv")
_SOURCE_OF = {"path": "file", "week": "huggingface", "date": "huggingface", "query": "arxiv"}
# Whose description of a paper wins: Hugging Face's page, model-written keywords and code links
# over an arXiv listing (categories, a versioned link) or a feed file; equal ranks never swap.
_SOURCE_RANK = {"huggingface": 1}


class Outcome(enum.Enum):
    """What one record did to the store."""

    added = "added"
    updated = "updated"
    unchanged = "unchanged"


@dataclass
class IngestReport:
    """How many records made new rows, changed rows, or matched rows exactly; and which failed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        """Count one record under its outcome."""
        if outcome is Outcome.added:
            self.added += 1
        elif outcome is Outcome.updated:
            self.updated += 1
        else:
            self.unchanged += 1


class _Papers:
    """The existing rows the records could match, plus the rows made during this ingest."""

    def __init__(self, rows: Iterable[Paper]) -> None:
        self.by_id: dict[str, Paper] = {}
        self.by_key: dict[str, Paper] = {}
        for row in rows:
            self.remember(row)

    def remember(self, row: Paper) -> None:
        if row.arxiv_id:
            self.by_id[row.arxiv_id] = row
        self.by_key[row.title_key] = row

    def match(self, record: PaperRecord, key: str) -> Paper | None:
        """The row for this record: by arXiv id, else by title. ValueError if they disagree."""
        if record.arxiv_id and record.arxiv_id in self.by_id:
            return self.by_id[record.arxiv_id]
        row = self.by_key.get(key)
        if row is not None and record.arxiv_id and row.arxiv_id:
            # Two papers with one normalised title; title_key is unique, so only one can stay.
            raise ValueError(f"same title as arXiv {row.arxiv_id}, but arXiv {record.arxiv_id}")
        return row


def ingest_records(
    session: Session, records: Iterable[PaperRecord], now: datetime | None = None
) -> IngestReport:
    """Insert new papers and refresh known ones; flushes but never commits (the caller does).

    A record matches a row by arXiv id, else by normalised title (and then lends the row its
    arXiv id). Papers without a date get `now` (default: the current time; naive means UTC) as
    published_at.
    """
    now = as_utc(now) if now else utcnow()
    records = list(records)
    papers = _Papers(_candidate_rows(session, records))
    report = IngestReport()
    for index, record in enumerate(records):
        try:
            outcome = _ingest_one(session, papers, record, now)
        except ValueError as exc:
            report.errors.append(f"record {index} ({record.title[:80]!r}): {exc}")
            continue
        report.count(outcome)
    session.flush()
    return report


def store_fetched(settings: Settings, fetched: SourceResult) -> IngestReport:
    """Ingest what a source returned in one transaction that commits (for jobs and the CLI).

    The source's own bad items come first in the report's errors.
    """
    with session_scope(settings.database_url) as session:
        report = ingest_records(session, fetched.records)
        store_new_vectors(session, settings)  # nothing without an embedding model
    return replace(report, errors=fetched.errors + report.errors)


def scheduled_ingest(settings: Settings) -> dict[str, Any]:
    """Beat's daily ingest from the configured source; returns the report as JSON-ready data.
    `paper_source_path` only counts for the file source (a path given would choose it)."""
    fetched = load_source(settings)
    return asdict(store_fetched(settings, fetched))


def load_source(
    settings: Settings,
    *,
    source: str | None = None,
    path: str | Path | None = None,
    week: str | None = None,
    date: str | None = None,
    query: str | None = None,
    client: httpx.Client | None = None,
) -> SourceResult:
    """Fetch from `source`; else from the one the arguments imply (path: file, week or date:
    huggingface, query: arxiv); else from `settings.paper_source`.

    The file source defaults to `settings.paper_source_path`, then to the bundled sample; arXiv
    to `settings.arxiv_query`. Raises ValueError for an unknown source or arguments that belong
    to different sources; SourceError if the source fails as a whole.
    """
    kind = _choose_source(settings, source, path=path, week=week, date=date, query=query)
    limits = FetchLimits(settings.ingest_max_bytes, settings.ingest_timeout_seconds)
    if kind == "huggingface":
        url, token = settings.huggingface_url, settings.huggingface_token
        return fetch_daily_papers(
            base_url=url, week=week, date=date, client=client, token=token, limits=limits
        )
    if kind == "arxiv":
        query = query or settings.arxiv_query
        return fetch_arxiv(base_url=settings.arxiv_url, query=query, client=client, limits=limits)
    return read_feed(path or settings.paper_source_path or sample_feed_path())


def sample_feed_path() -> Path:
    """The bundled sample feed (75 real papers, no dates) used by the offline demo."""
    return Path(__file__).resolve().parent.parent / "data" / "sample_feed.json"


def _choose_source(settings: Settings, source: str | None, **args: object) -> str:
    if source is not None and source not in _SOURCES:
        raise ValueError(f"unknown paper source {source!r}; choose one of {', '.join(_SOURCES)}")
    given = {name: _SOURCE_OF[name] for name, value in args.items() if value}
    kinds = set(given.values()) | ({source} if source else set())
    if len(kinds) > 1:
        named = [f"source={source}"] if source else []
        named += [f"{name} (an option of the {kind} source)" for name, kind in given.items()]
        raise ValueError(f"these belong to different paper sources: {', '.join(named)}")
    return kinds.pop() if kinds else settings.paper_source


def _candidate_rows(session: Session, records: list[PaperRecord]) -> Iterator[Paper]:
    # Two IN queries per chunk instead of two lookups per record.
    ids = sorted({record.arxiv_id for record in records if record.arxiv_id})
    keys = sorted({title_key(record.title) for record in records})
    for chunk in _chunks(ids):
        yield from session.exec(select(Paper).where(col(Paper.arxiv_id).in_(chunk)))
    for chunk in _chunks(keys):
        yield from session.exec(select(Paper).where(col(Paper.title_key).in_(chunk)))


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _ingest_one(session: Session, papers: _Papers, record: PaperRecord, now: datetime) -> Outcome:
    """Add or refresh the row for one record."""
    key = title_key(record.title)
    row = papers.match(record, key)
    if row is None:
        row = _new_row(record, key, now)
        outcome = Outcome.added
    elif _refresh(row, record):
        outcome = Outcome.updated
    else:
        return Outcome.unchanged
    session.add(row)
    papers.remember(row)
    return outcome


def _rank(source: str) -> int:
    return _SOURCE_RANK.get(source, 0)


def _new_row(record: PaperRecord, key: str, now: datetime) -> Paper:
    return Paper(
        arxiv_id=record.arxiv_id,
        title_key=key,
        title=record.title,
        abstract=record.abstract,
        authors=list(record.authors),
        keywords=list(record.keywords),
        **{name: getattr(record, name) for name in LINK_FIELDS},
        upvotes=record.upvotes,
        summary=record.summary,
        organization=record.organization,
        github_stars=record.github_stars,
        comments=record.comments,
        # Equal to ingested_at on purpose: _refresh recognises the stand-in date that way.
        published_at=record.published_at or now,
        ingested_at=now,
        source=record.source,
    )


def _refresh(row: Paper, record: PaperRecord) -> bool:
    """Copy over what the record knows that the row lacks or has older; True if anything changed.

    Links, authors and keywords are replaced only by the source the row has them from, or by one
    that knows more (`_SOURCE_RANK`); another source only fills what the row lacks. Otherwise a
    paper listed by Hugging Face and found again by an arXiv query swapped its keywords for
    arXiv's categories ("cs.CL") and its page for a versioned arXiv link on every other ingest.
    """
    replaces = record.source == row.source or _rank(record.source) > _rank(row.source)
    described = {name: getattr(record, name) for name in LINK_FIELDS}
    described |= {"authors": list(record.authors), "keywords": list(record.keywords)}
    changes = {
        name: value for name, value in described.items() if value and (replaces or not getattr(row, name))
    }
    if replaces:
        changes["source"] = record.source
    # A source without votes (arXiv, a plain file) reports 0; that is "unknown", not "none".
    if record.upvotes:
        changes["upvotes"] = record.upvotes
    # The same for what only Hugging Face reports: a source that lacks it leaves the row's value.
    changes |= {name: getattr(record, name) for name in ENRICHED_FIELDS if getattr(record, name)}
    if record.arxiv_id and not row.arxiv_id:
        changes["arxiv_id"] = record.arxiv_id
    if record.abstract and not row.abstract:
        changes["abstract"] = record.abstract
    if record.published_at and row.published_at == row.ingested_at:
        changes["published_at"] = record.published_at
    changed = {name: value for name, value in changes.items() if getattr(row, name) != value}
    for name, value in changed.items():
        setattr(row, name, value)
    return bool(changed)
