"""What every paper source produces: clean `PaperRecord`s, plus a note for each item it skipped."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from newsletter import __version__
from newsletter.values import as_utc, digits_only, load_json, shorten

MAX_TITLE = 1000
MAX_ABSTRACT = 10_000
MAX_TITLE_KEY = 500  # Paper.title_key is VARCHAR(500)
MAX_URL = 1000  # the Paper link columns are VARCHAR(1000); PostgreSQL refuses longer values
MAX_SOURCE = 40
MAX_UPVOTES = 2**31 - 1  # PostgreSQL INTEGER
MAX_NAME = 300  # one author or keyword
MAX_AUTHORS = 500  # large collaborations list thousands; a digest shows a handful
MAX_KEYWORDS = 50
MAX_SUMMARY = 600  # a one-line TL;DR (Hugging Face's ai_summary is one sentence)
MAX_ORGANIZATION = 200
LINK_FIELDS = ("url", "arxiv_url", "pdf_url", "code_url", "project_url", "thumbnail")
# What some sources add to a paper and others lack: a refresh keeps the row's value then.
ENRICHED_FIELDS = ("summary", "organization", "github_stars", "comments")
USER_AGENT = f"paper-digest/{__version__}"

# C0/C1 controls (NUL breaks PostgreSQL text), bidi overrides (they can reorder a subject line)
# and lone surrogates (not encodable as UTF-8). Tab, LF and CR are handled as whitespace.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NON_WORD = re.compile(r"[\W_]+")
_URL_UNSAFE = re.compile(r"\s")
_ARXIV_PREFIX = re.compile(r"^(?:arxiv:|https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/)", re.I)
_ARXIV_ID = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z][a-z-]*(?:\.[a-z]{2})?/\d{7})$", re.I)
_ARXIV_VERSION = re.compile(r"v\d+$")


class SourceError(Exception):
    """A source failed as a whole (unreachable, HTTP error, not JSON or XML); nothing is usable."""


@dataclass
class PaperRecord:
    """One paper as a source saw it. Construction cleans and validates every field.

    Raises ValueError if the paper is unusable (no title, title too long, bad upvotes or date).
    Links that are not http(s) and arXiv ids that do not look like one are dropped, not fatal.
    """

    title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    arxiv_id: str | None = None
    url: str | None = None  # landing page
    arxiv_url: str | None = None
    pdf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    thumbnail: str | None = None
    upvotes: int = 0
    published_at: datetime | None = None  # aware, in UTC; None means "when we ingested it"
    source: str = "file"
    summary: str = ""  # a one-line TL;DR when the source has one (Hugging Face's ai_summary)
    organization: str = ""  # the lab or company that posted it, as the source names it
    github_stars: int = 0  # stars of the code repository; 0 when unknown
    comments: int = 0  # discussion comments on the source's page

    def __post_init__(self) -> None:
        self.title = _checked_title(self.title)
        self.abstract = shorten(clean_block(self.abstract or "", "abstract"), MAX_ABSTRACT)
        self.authors = clean_names(self.authors, "authors")[:MAX_AUTHORS]
        self.keywords = _unique(clean_names(self.keywords, "keywords"))[:MAX_KEYWORDS]
        self.arxiv_id = normalise_arxiv_id(self.arxiv_id)
        for name in LINK_FIELDS:
            setattr(self, name, clean_url(getattr(self, name)))
        self.upvotes = parse_count(self.upvotes, "upvotes")
        self.summary = shorten(clean_line(self.summary or "", "summary"), MAX_SUMMARY)
        self.organization = clean_line(self.organization or "", "organization")[:MAX_ORGANIZATION]
        # Only shown beside a link or weighed into trending: a bad one is unknown (0), and does
        # not cost the paper its place as a bad title or date does.
        self.github_stars = _count_or_zero(self.github_stars)
        self.comments = _count_or_zero(self.comments)
        self.published_at = parse_datetime(self.published_at)
        self.source = clean_line(self.source, "source")[:MAX_SOURCE] or "unknown"
        self._derive_links()

    @property
    def identity(self) -> str:
        """The key two records of the same paper share: the arXiv id, else the title key."""
        return self.arxiv_id or f"title:{title_key(self.title)}"

    def _derive_links(self) -> None:
        if self.arxiv_id:
            self.arxiv_url = self.arxiv_url or f"https://arxiv.org/abs/{self.arxiv_id}"
            self.pdf_url = self.pdf_url or f"https://arxiv.org/pdf/{self.arxiv_id}"
            self.url = self.url or f"https://huggingface.co/papers/{self.arxiv_id}"


@dataclass
class SourceResult:
    """The usable records of one fetch, and one message per item that was skipped."""

    records: list[PaperRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def title_key(title: str) -> str:
    """A normalised title for matching: NFKC, case-folded, punctuation and spaces collapsed."""
    text = unicodedata.normalize("NFKC", title).casefold()
    # Soft hyphens and zero-width spaces would otherwise split a word in two.
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    key = _NON_WORD.sub(" ", text).strip() or " ".join(text.split())
    return key[:MAX_TITLE_KEY].rstrip()


def collect(items: Iterable[Any], parse: Callable[[Any], PaperRecord], label: str = "item") -> SourceResult:
    """Parse each raw item; a bad one is skipped and reported as "<label> <index>: <why>"."""
    result = SourceResult()
    for index, raw in enumerate(items):
        try:
            result.records.append(parse(raw))
        except (ValueError, TypeError) as exc:
            result.errors.append(f"{label} {index}: {exc}")
    return result


def drop_duplicates(records: Iterable[PaperRecord]) -> list[PaperRecord]:
    """The records in order, keeping only the first of each `identity`."""
    unique: dict[str, PaperRecord] = {}
    for record in records:
        unique.setdefault(record.identity, record)
    return list(unique.values())


def first(*values: Any) -> Any:
    """The first value that is neither None nor an empty string (sources leave either)."""
    return next((value for value in values if value is not None and value != ""), None)


def organization_name(value: Any) -> str:
    """The organisation's display name: `fullname`, else `name` (an object), or the text itself."""
    if isinstance(value, dict):
        value = first(value.get("fullname"), value.get("name"))
    return value if isinstance(value, str) else ""


def clean_line(value: Any, name: str) -> str:
    """One line of text: control characters removed, whitespace runs collapsed to one space."""
    if not isinstance(value, str):
        raise ValueError(f"{name} is not text")
    return " ".join(_CONTROL.sub("", value).split())


def clean_block(value: Any, name: str) -> str:
    """Multi-line text: control characters removed, line breaks kept (as \\n), ends stripped."""
    if not isinstance(value, str):
        raise ValueError(f"{name} is not text")
    text = value.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return _CONTROL.sub("", text).strip()


def clean_names(values: Any, name: str) -> list[str]:
    """Non-empty cleaned strings from a list; entries that are not text are skipped."""
    if not isinstance(values, list):
        raise ValueError(f"{name} is not a list")
    cleaned = (clean_line(value, name)[:MAX_NAME] for value in values if isinstance(value, str))
    return [value for value in cleaned if value]


def author_names(values: Any) -> list[Any]:
    """Names from a list of strings or of {"name": ...} objects, skipping `hidden` authors.
    A name that is not text stays in the list: `PaperRecord` skips it when it cleans the names."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise ValueError("authors is not a list")
    return [
        value if isinstance(value, str) else value.get("name")
        for value in values
        if isinstance(value, str) or (isinstance(value, dict) and value.get("hidden") is not True)
    ]


def keyword_list(values: Any) -> list[str]:
    """Keywords from a list of strings, or from one comma-separated string."""
    if values is None:
        return []
    return values.split(",") if isinstance(values, str) else values


def normalise_arxiv_id(value: Any) -> str | None:
    """The bare arXiv id ("2101.00001", "hep-th/9901001") from an id, `arXiv:` id or abs/pdf URL.

    Versions are dropped so every version matches the same paper. Returns None for anything
    that is not an arXiv id, since it would only build broken links.
    """
    if not isinstance(value, str):
        return None
    text = _ARXIV_PREFIX.sub("", value.strip()).removesuffix(".pdf")
    text = _ARXIV_VERSION.sub("", text)
    return text if _ARXIV_ID.match(text) else None


def clean_url(value: Any) -> str | None:
    """The URL if it is an absolute http(s) URL that fits the column, else None."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or len(url) > MAX_URL or _URL_UNSAFE.search(url) or _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # a malformed IPv6 host or port
        return None
    return url if parts.scheme.lower() in ("http", "https") and host else None


def _count_or_zero(value: Any) -> int:
    try:
        return parse_count(value, "count")
    except ValueError:
        return 0


def parse_count(value: Any, name: str) -> int:
    """A non-negative whole number from an int, an integral float or a digit string (None is 0)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UPVOTES:
        raise ValueError(f"{name} is not a whole number from 0 to {MAX_UPVOTES}: {_show(value)}")
    return value


def parse_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime (as the store keeps them) from an ISO 8601 string, a date or a
    datetime; None if absent. Naive inputs are taken to be UTC. Raises ValueError otherwise.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"published_at is not an ISO 8601 date: {_show(value)}") from None
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"published_at is not a date: {_show(value)}")


def describe_response(response: httpx.Response) -> str:
    """A short, single-line excerpt of a response body for an error message."""
    try:
        data = load_json(response.content)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return _show_text(data["error"])
    return _show_text(response.text) or "(empty body)"


@dataclass(frozen=True)
class FetchLimits:
    """How large one response may be (its decoded body) and how long it may take to arrive
    (`Settings.ingest_max_bytes`, `Settings.ingest_timeout_seconds`)."""

    max_bytes: int = 20 * 2**20
    seconds: float = 60.0


DEFAULT_LIMITS = FetchLimits()
READ_TIMEOUT = 30.0  # seconds for any one network step (connect, each read)


@contextmanager
def http_client(client: httpx.Client | None, timeout: float = READ_TIMEOUT) -> Iterator[httpx.Client]:
    """Yield `client`, or a fresh client that is closed afterwards. Redirects are followed;
    httpx drops an Authorization header (the Hugging Face token) when one leaves the origin."""
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=timeout, follow_redirects=True) as own:
        yield own


def http_get(
    http: httpx.Client,
    url: str,
    *,
    params: dict[str, Any],
    headers: dict[str, str],
    source: str,
    limits: FetchLimits = DEFAULT_LIMITS,
) -> httpx.Response:
    """GET `url` and read its body, at most `limits.max_bytes` of it within `limits.seconds`.

    A network failure, a larger body or a slower one becomes SourceError naming the source; the
    status is not checked. The deadline is checked as the body arrives, and each network step
    also has a timeout of at most `limits.seconds`.
    """
    deadline = time.monotonic() + limits.seconds
    step = min(READ_TIMEOUT, limits.seconds)
    try:
        with http.stream(
            "GET", url, params=params, headers={"User-Agent": USER_AGENT, **headers}, timeout=step
        ) as response:
            body = _read_body(response, limits, deadline, source)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceError(f"{source}: cannot reach {url}: {exc}") from exc
    # The body is decoded already: a Content-Encoding kept here would have it decoded twice.
    kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(response.status_code, headers=kept, content=body, request=response.request)


def _read_body(response: httpx.Response, limits: FetchLimits, deadline: float, source: str) -> bytes:
    too_big = f"{source}: {response.url} sent more than {limits.max_bytes} bytes; stopped reading"
    declared = response.headers.get("content-length", "")
    if digits_only(declared) and int(declared) > limits.max_bytes:
        raise SourceError(too_big)
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limits.max_bytes:
            raise SourceError(too_big)
        if time.monotonic() > deadline:
            raise SourceError(
                f"{source}: {response.url} took longer than {limits.seconds:g} s; stopped reading"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _checked_title(value: Any) -> str:
    title = clean_line(value if value is not None else "", "title")
    if not title:
        raise ValueError("missing title")
    if len(title) > MAX_TITLE:
        raise ValueError(f"title is longer than {MAX_TITLE} characters")
    return title


def _unique(values: list[str]) -> list[str]:
    first_spelling: dict[str, str] = {}
    for value in values:
        first_spelling.setdefault(value.casefold(), value)
    return list(first_spelling.values())


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _show_text(text: str) -> str:
    line = " ".join(_CONTROL.sub("", text).split())
    return line if len(line) <= 200 else line[:197] + "..."
