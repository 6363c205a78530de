"""The Hugging Face source: `/api/daily_papers`, paged, for one ISO week or one day.

Items carry some fields at the top level and some in a nested `paper` object, and which side a
field sits on has changed over time, so both are read.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx

from newsletter.papers.base import (
    DEFAULT_LIMITS,
    FetchLimits,
    PaperRecord,
    SourceError,
    SourceResult,
    author_names,
    collect,
    describe_response,
    first,
    http_client,
    http_get,
    keyword_list,
    organization_name,
)
from newsletter.values import JSONTooDeep, load_json

NAME = "Hugging Face daily papers"
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def fetch_daily_papers(
    *,
    base_url: str,
    week: str | None = None,
    date: str | dt.date | None = None,
    limit: int = 100,
    max_pages: int = 20,
    client: httpx.Client | None = None,
    token: str | None = None,
    limits: FetchLimits = DEFAULT_LIMITS,
) -> SourceResult:
    """All papers listed for `week` ("2025-W09") or `date` (default: the latest day).

    Pages through the listing until a page is empty or shorter than `limit`, dropping repeats.
    Raises ValueError for a bad week/date/limit, SourceError if any page fails (HTTP error,
    unreachable, not a JSON list, past `limits` in size or time). Bad items are skipped and
    reported in `errors`. The token is not sent on to another origin if a page redirects there.
    """
    params = listing_params(week=week, date=date, limit=limit)
    if max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with http_client(client) as http:
        return _fetch_pages(http, base_url, params, headers, max_pages, limits)


def listing_params(*, week: str | None, date: str | dt.date | None, limit: int) -> dict[str, Any]:
    """Query parameters for one listing; raises ValueError with the expected format if invalid."""
    if week is not None and date is not None:
        raise ValueError("give either week or date, not both")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    params: dict[str, Any] = {"limit": limit}
    if week is not None:
        params["week"] = check_week(week)
    if date is not None:
        params["date"] = check_day(date)
    return params


def check_week(week: str) -> str:
    """`week` unchanged if it is an ISO week that exists ("2025-W09"); else ValueError."""
    match = _WEEK.fullmatch(week) if isinstance(week, str) else None
    try:
        if match:
            dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
            return week
    except ValueError:
        pass
    raise ValueError(f"week must be an ISO week such as 2025-W09, got {week!r}")


def check_day(day: str | dt.date) -> str:
    """The day as "YYYY-MM-DD" if it is a real date; else ValueError."""
    if isinstance(day, dt.date):
        return day.strftime("%Y-%m-%d")
    try:
        if isinstance(day, str) and _DAY.fullmatch(day):
            return dt.date.fromisoformat(day).isoformat()
    except ValueError:
        pass
    raise ValueError(f"date must be a day such as 2025-09-08, got {day!r}")


def parse_item(raw: Any) -> PaperRecord:
    """One `/api/daily_papers` item as a record. Raises ValueError if the item is unusable.

    The nested paper's fields win (its `publishedAt` is the arXiv date; the top-level one is the
    day it was listed), except the title, which the listing carries at the top level.
    """
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    paper = raw.get("paper") or {}
    if not isinstance(paper, dict):
        raise ValueError("'paper' is not an object")

    def pick(name: str) -> Any:
        return first(paper.get(name), raw.get(name))

    return PaperRecord(
        title=first(raw.get("title"), paper.get("title")),
        abstract=pick("summary") or "",
        authors=author_names(pick("authors")),
        keywords=keyword_list(pick("ai_keywords")),
        arxiv_id=pick("id"),
        code_url=pick("githubRepo"),
        project_url=pick("projectPage"),
        thumbnail=first(raw.get("thumbnail"), paper.get("thumbnail")),
        upvotes=pick("upvotes"),
        published_at=pick("publishedAt"),
        source="huggingface",
        summary=pick("ai_summary") or "",
        organization=organization_name(pick("organization")),
        github_stars=pick("githubStars") or 0,
        comments=pick("numComments") or 0,
    )


def _fetch_pages(
    http: httpx.Client,
    base_url: str,
    params: dict[str, Any],
    headers: dict[str, str],
    max_pages: int,
    limits: FetchLimits,
) -> SourceResult:
    result, seen = SourceResult(), set[str]()
    for page in range(max_pages):
        items = _get_page(http, base_url, {**params, "p": page}, headers, limits)
        batch = collect(items, parse_item, label=f"page {page} item")
        new = [record for record in batch.records if not _seen_before(record.identity, seen)]
        result.records += new
        result.errors += batch.errors
        # A server that ignored `p` would serve the same full page again and again.
        if len(items) < params["limit"] or (batch.records and not new):
            return result
    result.errors.append(f"stopped after {max_pages} pages; later papers were not fetched")
    return result


def _seen_before(key: str, seen: set[str]) -> bool:
    """True if `key` is already in `seen`; otherwise add it and return False."""
    if key in seen:
        return True
    seen.add(key)
    return False


def _get_page(
    http: httpx.Client, base_url: str, params: dict[str, Any], headers: dict[str, str], limits: FetchLimits
) -> list[Any]:
    response = http_get(http, base_url, params=params, headers=headers, source=NAME, limits=limits)
    if not response.is_success:
        reason = describe_response(response)
        raise SourceError(f"{NAME}: HTTP {response.status_code} from {response.url}: {reason}")
    try:
        data = load_json(response.content)
    except JSONTooDeep:
        raise SourceError(f"{NAME}: {response.url} returned JSON nested too deeply to read") from None
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise SourceError(f"{NAME}: {response.url} did not return JSON ({kind})") from None
    if not isinstance(data, list):
        got = describe_response(response)
        raise SourceError(f"{NAME}: expected a list of papers from {response.url}, got: {got}")
    return data
