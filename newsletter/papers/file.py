"""The file source: a JSON feed on disk (the bundled sample, or one an operator exports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from newsletter.papers.base import (
    PaperRecord,
    SourceError,
    SourceResult,
    author_names,
    collect,
    drop_duplicates,
    first,
    keyword_list,
    organization_name,
)
from newsletter.values import JSONTooDeep, load_json


def read_feed(path: str | Path) -> SourceResult:
    """Read a JSON feed file: `{"papers": [...]}` or a bare list of papers.

    Raises SourceError (naming the file, and the line for bad JSON) if the file cannot be read
    or is not a feed. Bad items are skipped and reported in `errors`.
    """
    path = Path(path)
    try:
        data = load_json(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise SourceError(f"cannot read paper feed {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise SourceError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    except JSONTooDeep as exc:
        raise SourceError(f"{path}: not a paper feed: its JSON is nested too deeply to read") from exc
    try:
        return parse_feed(data)
    except SourceError as exc:
        raise SourceError(f"{path}: {exc}") from exc


def parse_feed(data: Any, source: str = "file") -> SourceResult:
    """Records from already-loaded feed JSON; repeats of a paper are dropped.

    Raises SourceError if `data` is neither a list nor an object with a "papers" list.
    """
    items = data.get("papers") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SourceError('a paper feed is a list of papers or an object with a "papers" list')
    result = collect(items, lambda raw: parse_item(raw, source))
    result.records = drop_duplicates(result.records)
    return result


def parse_item(raw: Any, source: str = "file") -> PaperRecord:
    """One feed item as a record; field aliases follow the Hugging Face names. Raises ValueError."""
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    return PaperRecord(
        title=raw.get("title", ""),  # absent, None or "": "missing title" alike
        abstract=first(raw.get("abstract"), raw.get("summary")) or "",
        authors=author_names(raw.get("authors")),
        keywords=keyword_list(raw.get("keywords")),
        arxiv_id=first(raw.get("arxiv_id"), raw.get("id")),
        url=raw.get("url"),
        arxiv_url=raw.get("arxiv_url"),
        pdf_url=raw.get("pdf_url"),
        code_url=first(raw.get("code_url"), raw.get("githubRepo")),
        project_url=first(raw.get("project_url"), raw.get("projectPage")),
        thumbnail=raw.get("thumbnail"),
        upvotes=raw.get("upvotes", 0),  # absent or None: 0 alike
        published_at=first(raw.get("published_at"), raw.get("publishedAt")),
        source=source,
        summary=first(raw.get("tldr"), raw.get("ai_summary")) or "",
        organization=organization_name(raw.get("organization")),
        github_stars=first(raw.get("github_stars"), raw.get("githubStars")) or 0,
        comments=first(raw.get("comments"), raw.get("numComments")) or 0,
    )
