"""The arXiv source: the legacy Atom query API (https://info.arxiv.org/help/api/user-manual.html).

arXiv's terms allow one request at a time and no more than one every three seconds, so every
request in this process goes through one lock and waits out the interval since the last one.
Other processes are not coordinated: run arXiv fetches from one place (the ingest task).
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree as defused
import httpx
from defusedxml import DefusedXmlException

from newsletter.papers.base import (
    DEFAULT_LIMITS,
    FetchLimits,
    PaperRecord,
    SourceError,
    SourceResult,
    collect,
    describe_response,
    http_client,
    http_get,
)

NAME = "arXiv API"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}
MAX_RESULTS = 2000  # the API's largest slice

_request_lock = threading.Lock()
_last_request_done: float | None = None  # time.monotonic() when the previous request ended


def fetch_arxiv(
    *,
    base_url: str,
    query: str,
    max_results: int = 50,
    client: httpx.Client | None = None,
    min_interval: float = 3.0,
    limits: FetchLimits = DEFAULT_LIMITS,
) -> SourceResult:
    """The newest `max_results` papers matching `query` (arXiv search syntax, e.g. "cat:cs.LG").

    Waits so that requests from this process are serialised and at least `min_interval` seconds
    apart. Raises ValueError for a bad query or size; SourceError if arXiv is unreachable, answers
    with an HTTP or API error, sends malformed XML, or a body past `limits` (size or time). Bad
    entries are skipped and reported.
    """
    if not query.strip():
        raise ValueError("query must not be empty")
    if not 1 <= max_results <= MAX_RESULTS:
        raise ValueError(f"max_results must be between 1 and {MAX_RESULTS}")
    params = {
        "search_query": query,
        "start": 0,
        "max_results": max_results,
        "sortBy": "submittedDate",
        "sortOrder": "descending",
    }
    with http_client(client) as http:
        response = _polite_get(http, base_url, params, min_interval, limits)
    if not response.is_success:
        raise SourceError(f"{NAME}: HTTP {response.status_code}: {_failure_reason(response)}")
    return parse_arxiv_feed(response.content)


def parse_arxiv_feed(content: bytes | str) -> SourceResult:
    """Records from an Atom response. Raises SourceError for malformed XML or an API error feed."""
    root = _parse_xml(content)
    entries = root.findall("atom:entry", NS)
    message = _api_error(entries)
    if message is not None:
        raise SourceError(f"{NAME} error: {message}")
    return collect(entries, parse_entry, label="entry")


def parse_entry(entry: ET.Element) -> PaperRecord:
    """One Atom entry as a record. Raises ValueError if it is unusable (e.g. no title)."""
    links = {_link_name(link): link.get("href") for link in entry.findall("atom:link", NS)}
    # ISO 8601 text, parsed by PaperRecord (like every source's date), after it checks the title.
    published: Any = entry.findtext("atom:published", None, NS)
    return PaperRecord(
        title=_collapsed(entry.findtext("atom:title", "", NS)),
        abstract=_collapsed(entry.findtext("atom:summary", "", NS)),
        authors=[name.text or "" for name in entry.findall("atom:author/atom:name", NS)],
        keywords=_categories(entry),
        # The base normaliser strips the abs-URL prefix and the version ("2101.00001v2").
        arxiv_id=entry.findtext("atom:id", "", NS),
        url=_https(links.get("alternate")),
        arxiv_url=_https(links.get("alternate")),
        pdf_url=_https(links.get("pdf")),
        published_at=published,
        source="arxiv",
    )


def _polite_get(
    http: httpx.Client, url: str, params: dict[str, Any], min_interval: float, limits: FetchLimits
) -> httpx.Response:
    global _last_request_done
    with _request_lock:
        if _last_request_done is not None:
            time.sleep(max(0.0, _last_request_done + min_interval - time.monotonic()))
        try:
            return http_get(http, url, params=params, headers={}, source=NAME, limits=limits)
        finally:
            # Counting from the end of the request keeps the starts >= min_interval apart too.
            _last_request_done = time.monotonic()


def _parse_xml(content: bytes | str) -> ET.Element:
    # arXiv never sends a DOCTYPE. defusedxml refuses one as the parser meets it, in whatever
    # encoding the document declares (a byte search for "<!DOCTYPE" misses UTF-16), so no
    # entity is ever defined, expanded or fetched.
    try:
        root = defused.fromstring(content, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise SourceError(f"{NAME}: refusing XML with a DOCTYPE or entities ({exc!r})") from exc
    except ET.ParseError as exc:
        raise SourceError(f"{NAME}: malformed XML ({exc})") from exc
    if root.tag != f"{{{NS['atom']}}}feed":
        raise SourceError(f"{NAME}: expected an Atom feed, got <{root.tag}>")
    return root


def _api_error(entries: list[ET.Element]) -> str | None:
    """arXiv reports errors as a feed whose single entry is titled "Error"."""
    if len(entries) != 1 or _collapsed(entries[0].findtext("atom:title", "", NS)) != "Error":
        return None
    return _collapsed(entries[0].findtext("atom:summary", "", NS)) or "unspecified error"


def _failure_reason(response: httpx.Response) -> str:
    # A 400 for a bad query carries the usual error feed; prefer its message to raw XML.
    try:
        return _api_error(_parse_xml(response.content).findall("atom:entry", NS)) or "no message"
    except SourceError:
        return describe_response(response)


def _categories(entry: ET.Element) -> list[str]:
    primary = entry.find("arxiv:primary_category", NS)
    terms = [primary.get("term")] if primary is not None else []
    terms += [category.get("term") for category in entry.findall("atom:category", NS)]
    return [term for term in terms if term]  # PaperRecord drops repeats


def _link_name(link: ET.Element) -> str:
    return link.get("title") or link.get("rel") or "alternate"


def _collapsed(text: str | None) -> str:
    return " ".join((text or "").split())


def _https(url: str | None) -> str | None:
    # The API still writes http:// links; arxiv.org serves the same pages over https.
    if url and url.startswith("http://arxiv.org/"):
        return "https://" + url.removeprefix("http://")
    return url
