"""Paper sources and ingest: the file feed, Hugging Face and arXiv against a real local HTTP
server, and upserts into an in-memory SQLite store."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import Session, SQLModel, create_engine, select

from newsletter.config import Settings
from newsletter.models import Paper
from newsletter.papers import (
    PaperRecord,
    SourceError,
    fetch_arxiv,
    fetch_daily_papers,
    ingest_records,
    load_source,
    parse_feed,
    read_feed,
    sample_feed_path,
    title_key,
)
from newsletter.papers.huggingface import parse_item
from newsletter.papers.ingest import scheduled_ingest

DATA = Path(__file__).parent / "data"
Reply = tuple[int, str, bytes]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# --- a real HTTP server on 127.0.0.1, answering from canned files -------------------------------


@dataclass
class Hit:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() when the request arrived


class StubServer(ThreadingHTTPServer):
    """Serves `routes` (path -> reply, or a function of the query returning one); logs `hits`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Reply | Callable[[dict[str, str]], Reply]] = {}
        self.hits: list[Hit] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        route = self.routes.get(path)
        if route is None:
            return 404, "text/plain", b"no such route"
        return route(query) if callable(route) else route


class _Handler(BaseHTTPRequestHandler):
    server: StubServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        self.server.hits.append(Hit(parts.path, query, dict(self.headers), time.monotonic()))
        status, content_type, body = self.server.answer(parts.path, query)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass


@pytest.fixture
def server() -> Iterator[StubServer]:
    stub = StubServer()
    # A short poll interval keeps shutdown (once per test) from costing half a second.
    thread = threading.Thread(target=stub.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield stub
    stub.shutdown()
    stub.server_close()
    thread.join()


def json_reply(data: Any, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(data).encode()


def file_reply(name: str, content_type: str, status: int = 200) -> Reply:
    return status, content_type, (DATA / name).read_bytes()


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- the file feed ------------------------------------------------------------------------------


class TestFileFeed:
    def test_bundled_sample_parses_every_paper(self) -> None:
        result = read_feed(sample_feed_path())

        assert result.errors == []
        assert len(result.records) == 75
        assert all(0 <= record.upvotes <= 150 for record in result.records)
        assert all(record.published_at is None for record in result.records)
        assert result.records[0].title == "Life, uh, Finds a Way: Systematic Neural Search"

    def test_bundled_sample_keeps_the_shared_titles_and_abstracts(self) -> None:
        raw = json.loads(sample_feed_path().read_text(encoding="utf-8"))

        assert "trending-papers.json" in raw["source"]
        assert len({paper["title"] for paper in raw["papers"]}) == 75
        assert all(paper["abstract"] for paper in raw["papers"])

    def test_bare_list(self, tmp_path: Path) -> None:
        path = write_json(tmp_path / "feed.json", [{"title": "One"}, {"title": "Two"}])

        result = read_feed(path)

        assert [record.title for record in result.records] == ["One", "Two"]
        assert result.errors == []

    def test_aliases_and_derived_links(self) -> None:
        item = {
            "title": "Aliased",
            "summary": "From summary.",
            "authors": [{"name": "Ada"}, "Alan", {"name": "Ghost", "hidden": True}],
            "keywords": ["rl", "RL", "robots"],
            "id": "arXiv:2101.00001v3",
            "githubRepo": "https://github.com/x/y",
            "projectPage": "https://x.example/y",
            "publishedAt": "2025-03-14T12:00:00+01:00",
        }

        [record] = parse_feed([item]).records

        assert record.abstract == "From summary."
        assert record.authors == ["Ada", "Alan"]
        assert record.keywords == ["rl", "robots"]
        assert record.arxiv_id == "2101.00001"
        assert record.arxiv_url == "https://arxiv.org/abs/2101.00001"
        assert record.pdf_url == "https://arxiv.org/pdf/2101.00001"
        assert record.url == "https://huggingface.co/papers/2101.00001"
        assert record.code_url == "https://github.com/x/y"
        assert record.project_url == "https://x.example/y"
        assert record.published_at == utc(2025, 3, 14, 11, 0)

    def test_malformed_json_names_the_file_and_line(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.json"
        path.write_text('{"papers": [\n  {"title": "ok"},\n  {"title": }\n]}', encoding="utf-8")

        with pytest.raises(SourceError, match=r"broken\.json: not valid JSON at line 3"):
            read_feed(path)

    def test_missing_file_is_a_source_error(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match="cannot read paper feed"):
            read_feed(tmp_path / "absent.json")

    def test_json_that_is_not_a_feed_is_a_source_error(self, tmp_path: Path) -> None:
        path = write_json(tmp_path / "other.json", {"items": []})

        with pytest.raises(SourceError, match='other.json: .*"papers" list'):
            read_feed(path)

    def test_bad_items_are_skipped_and_reported(self) -> None:
        items = [
            {"title": "Kept"},
            {"abstract": "no title"},
            "not an object",
            {"title": "Negative", "upvotes": -1},
            {"title": "Bad date", "published_at": "last Tuesday"},
            {"title": "x" * 1001},
            {"title": "Also kept", "upvotes": "12"},
        ]

        result = parse_feed({"papers": items})

        assert [record.title for record in result.records] == ["Kept", "Also kept"]
        assert result.records[1].upvotes == 12
        assert result.errors[0] == "item 1: missing title"
        assert result.errors[1] == "item 2: not a JSON object"
        assert result.errors[2].startswith("item 3: upvotes is not a whole number")
        assert result.errors[3].startswith("item 4: published_at is not an ISO 8601 date")
        assert result.errors[4] == "item 5: title is longer than 1000 characters"

    def test_markup_in_a_title_is_kept_as_text(self) -> None:
        title = '<script>alert("x")</script> & <b>Bold</b> Claims'
        item = {"title": title, "abstract": "<img src=x onerror=alert(1)>"}

        [record] = parse_feed([item]).records

        assert record.title == title
        assert record.abstract == "<img src=x onerror=alert(1)>"

    def test_text_is_cleaned(self) -> None:
        record = PaperRecord(
            title="  Nul\x00 and\tbidi\u202e\n title ",
            abstract="line one\r\nline two\x07" + "a" * 20_000,
        )

        assert record.title == "Nul and bidi title"
        assert record.abstract.startswith("line one\nline two")
        assert len(record.abstract) == 10_000
        assert record.abstract.endswith("…")

    @pytest.mark.parametrize(
        "url",
        [
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://x.org/a",
            "/relative",
            "https://",
            42,
            "https://x.org/a b",
            "https://x.org/" + "a" * 1000,
        ],
    )
    def test_unsafe_or_unusable_links_are_dropped(self, url: Any) -> None:
        record = PaperRecord(title="Links", code_url=url, url=url, thumbnail=url)

        assert (record.code_url, record.url, record.thumbnail) == (None, None, None)

    def test_repeats_within_a_feed_are_dropped(self) -> None:
        items = [{"title": "Same", "id": "2101.00001"}, {"title": "Same?", "id": "2101.00001v2"}]

        result = parse_feed(items)

        assert [record.title for record in result.records] == ["Same"]


class TestTitleKey:
    def test_case_punctuation_and_width_are_ignored(self) -> None:
        assert title_key("GPT-4: A Study!") == title_key("gpt 4   a study")
        assert title_key("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"
        assert title_key("Straße") == title_key("STRASSE")
        assert title_key("Zero\u200bwidth") == "zerowidth"

    def test_long_titles_are_truncated(self) -> None:
        assert len(title_key("word " * 300)) <= 500

    def test_a_title_of_punctuation_still_has_a_key(self) -> None:
        assert title_key("???") == "???"


# --- Hugging Face -------------------------------------------------------------------------------


def hf_pages(server: StubServer) -> None:
    pages = [
        json.loads((DATA / f"hf_daily_papers_page{number}.json").read_text(encoding="utf-8"))
        for number in (0, 1)
    ]
    server.routes["/api/daily_papers"] = lambda query: json_reply(
        pages[int(query["p"])] if int(query["p"]) < len(pages) else []
    )


class TestHuggingFace:
    def fetch(self, server: StubServer, **options: Any) -> Any:
        options = {"week": "2025-W37", "limit": 4, **options}
        return fetch_daily_papers(base_url=server.url("/api/daily_papers"), **options)

    def test_pages_until_a_short_page(self, server: StubServer) -> None:
        hf_pages(server)

        result = self.fetch(server)

        assert [hit.query["p"] for hit in server.hits] == ["0", "1"]
        assert {hit.query["week"] for hit in server.hits} == {"2025-W37"}
        assert {hit.query["limit"] for hit in server.hits} == {"4"}
        assert [record.arxiv_id for record in result.records] == [
            "2509.04664",
            "2510.01234",
            "2510.05555",
        ]  # the repeat of 2509.04664 on page 1 is dropped

    def test_reads_the_nested_paper_first(self, server: StubServer) -> None:
        hf_pages(server)

        nested = self.fetch(server).records[0]

        assert nested.title == "Why Language Models Hallucinate"
        assert nested.authors == ["Adam Tauman Kalai", "Ofir Nachum"]  # the hidden one is skipped
        assert nested.published_at == utc(2025, 9, 4, 21, 26, 31)  # arXiv date, not listing
        assert nested.abstract.startswith("Like students facing hard exam questions, large")
        assert nested.upvotes == 26
        assert nested.keywords[0] == "hallucinations"
        assert nested.code_url == "https://github.com/example/hallucinate"
        assert nested.project_url == "https://example.org/hallucinate"
        assert nested.thumbnail.endswith("/papers/2509.04664.png")
        assert nested.url == "https://huggingface.co/papers/2509.04664"
        assert nested.source == "huggingface"
        # what the cards show and trending counts, which the ingest once dropped
        assert nested.summary.startswith("Language models produce incorrect statements")
        assert nested.organization == "Organization Name"  # fullname, not the slug
        assert (nested.github_stars, nested.comments) == (100, 7)

    def test_a_bad_star_or_comment_count_is_unknown_not_fatal(self) -> None:
        """`"githubStars": -1` dropped the whole paper ("skipped: … not a whole number")."""
        item = {"paper": {"id": "2509.04664", "title": "Kept", "summary": "An abstract."}}
        for bad in (-1, 3.5, "many", True):
            record = parse_item({**item, "githubStars": bad, "numComments": bad})
            assert (record.title, record.github_stars, record.comments) == ("Kept", 0, 0)
        with pytest.raises(ValueError, match="upvotes is not a whole number"):  # what ranks it stays strict
            parse_item({**item, "paper": {**item["paper"], "upvotes": -1}})

    def test_reads_top_level_fields(self, server: StubServer) -> None:
        hf_pages(server)

        _, flat, fallback = self.fetch(server).records

        assert flat.authors == ["Flat Author"]
        assert flat.upvotes == 5
        assert flat.keywords == ["flat", "top level"]
        assert flat.code_url is None  # javascript: is dropped
        assert flat.project_url == "https://example.org/flat"
        assert flat.published_at == utc(2025, 10, 2, 10, 0)
        assert fallback.published_at == utc(2025, 10, 3, 6, 30)  # listing date, in UTC
        assert fallback.arxiv_id == "2510.05555"

    def test_malformed_items_are_skipped_and_reported(self, server: StubServer) -> None:
        hf_pages(server)

        result = self.fetch(server)

        assert result.errors == [
            "page 0 item 2: missing title",
            "page 0 item 3: 'paper' is not an object",
        ]

    def test_sends_the_token(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = json_reply([])

        self.fetch(server, token="hf_secret")

        assert server.hits[0].headers["Authorization"] == "Bearer hf_secret"

    def test_date_instead_of_week(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = json_reply([])

        self.fetch(server, week=None, date="2025-09-08")

        assert server.hits[0].query["date"] == "2025-09-08"
        assert "week" not in server.hits[0].query

    def test_stops_at_max_pages_and_says_so(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = lambda query: json_reply(
            [{"title": f"Paper {query['p']}", "id": f"2510.0000{query['p']}"}]
        )

        result = self.fetch(server, limit=1, max_pages=3)

        assert len(result.records) == 3
        assert result.errors == ["stopped after 3 pages; later papers were not fetched"]

    def test_stops_when_the_server_repeats_a_page(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = json_reply([{"title": "Again", "id": "2510.00001"}])

        result = self.fetch(server, limit=1, max_pages=10)

        assert len(server.hits) == 2
        assert len(result.records) == 1

    def test_http_error_is_a_source_error(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = json_reply({"error": "Internal Error"}, status=500)

        with pytest.raises(SourceError, match="HTTP 500 .*Internal Error"):
            self.fetch(server)

    def test_a_failing_second_page_fails_the_source(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = lambda query: (
            json_reply([{"title": "First", "id": "2510.00001"}])
            if query["p"] == "0"
            else (502, "text/html", b"<html>Bad gateway</html>")
        )

        with pytest.raises(SourceError, match="HTTP 502"):
            self.fetch(server, limit=1)

    def test_non_json_is_a_source_error(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = (200, "text/html", b"<html>maintenance</html>")

        with pytest.raises(SourceError, match="did not return JSON"):
            self.fetch(server)

    def test_a_page_that_is_not_a_list_is_a_source_error(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = json_reply({"error": "Invalid week"})

        with pytest.raises(SourceError, match="expected a list of papers.*Invalid week"):
            self.fetch(server)

    def test_unreachable_is_a_source_error(self) -> None:
        closed = StubServer()
        url = closed.url("/api/daily_papers")
        closed.server_close()

        with pytest.raises(SourceError, match="cannot reach"):
            fetch_daily_papers(base_url=url, week="2025-W37")

    @pytest.mark.parametrize("week", ["2025-09", "2025-W9", "2025W09", "2025-W54", "2021-W53", ""])
    def test_bad_week_is_refused_before_any_request(self, server: StubServer, week: str) -> None:
        with pytest.raises(ValueError, match="ISO week such as 2025-W09"):
            self.fetch(server, week=week)

        assert server.hits == []

    def test_parse_item_refuses_an_item_without_title(self) -> None:
        with pytest.raises(ValueError, match="missing title"):
            parse_item({"paper": {"id": "2509.04664"}})


# --- arXiv --------------------------------------------------------------------------------------


class TestArxiv:
    def fetch(self, server: StubServer, **options: Any) -> Any:
        options = {"query": "cat:cs.LG", "min_interval": 0.01, **options}
        return fetch_arxiv(base_url=server.url("/api/query"), **options)

    def test_parses_entries(self, server: StubServer) -> None:
        server.routes["/api/query"] = file_reply("arxiv_feed.xml", "application/atom+xml")

        first, old = self.fetch(server, max_results=3).records

        assert first.arxiv_id == "2101.00001"  # "v2" stripped
        assert first.title == "A Title That Wraps Across Two Lines"
        assert first.abstract == "The abstract is wrapped at seventy columns, as arXiv does."
        assert first.authors == ["Ada Lovelace", "Alan Turing"]
        assert first.keywords == ["cs.LG", "stat.ML"]
        assert first.pdf_url == "https://arxiv.org/pdf/2101.00001v2"
        assert first.arxiv_url == "https://arxiv.org/abs/2101.00001v2"
        assert first.published_at == utc(2021, 1, 1, 18, 59, 59)
        assert first.source == "arxiv"
        assert old.arxiv_id == "hep-th/9901001"
        assert old.title == "An Old-Style Identifier <b>kept as text</b>"

    def test_sends_the_query(self, server: StubServer) -> None:
        server.routes["/api/query"] = file_reply("arxiv_feed.xml", "application/atom+xml")

        self.fetch(server, query="cat:cs.LG AND ti:search", max_results=3)

        assert server.hits[0].query["search_query"] == "cat:cs.LG AND ti:search"
        assert server.hits[0].query["max_results"] == "3"
        assert server.hits[0].query["sortBy"] == "submittedDate"

    def test_a_bad_entry_is_skipped_and_reported(self, server: StubServer) -> None:
        server.routes["/api/query"] = file_reply("arxiv_feed.xml", "application/atom+xml")

        result = self.fetch(server)

        assert result.errors == ["entry 2: missing title"]

    def test_error_feed_is_a_source_error(self, server: StubServer) -> None:
        server.routes["/api/query"] = file_reply("arxiv_error.xml", "application/atom+xml")

        with pytest.raises(SourceError, match="incorrect id format for 1234.12345"):
            self.fetch(server)

    def test_http_400_reports_the_error_feed_message(self, server: StubServer) -> None:
        server.routes["/api/query"] = file_reply("arxiv_error.xml", "application/atom+xml", 400)

        with pytest.raises(SourceError, match="HTTP 400: incorrect id format"):
            self.fetch(server)

    def test_http_503_is_a_source_error(self, server: StubServer) -> None:
        server.routes["/api/query"] = (503, "text/plain", b"Service Unavailable")

        with pytest.raises(SourceError, match="HTTP 503: Service Unavailable"):
            self.fetch(server)

    def test_malformed_xml_is_a_source_error(self, server: StubServer) -> None:
        server.routes["/api/query"] = (200, "application/atom+xml", b"<feed><entry></feed>")

        with pytest.raises(SourceError, match="malformed XML"):
            self.fetch(server)

    def test_a_doctype_is_refused(self, server: StubServer) -> None:
        body = b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaa">]><feed/>'
        server.routes["/api/query"] = (200, "application/atom+xml", body)

        with pytest.raises(SourceError, match="DOCTYPE"):
            self.fetch(server)

    def test_requests_are_spaced_by_min_interval(self, server: StubServer) -> None:
        server.routes["/api/query"] = file_reply("arxiv_feed.xml", "application/atom+xml")

        self.fetch(server, min_interval=0.3)
        self.fetch(server, min_interval=0.3)

        assert server.hits[1].at - server.hits[0].at >= 0.3

    def test_concurrent_callers_are_serialised_and_spaced(self, server: StubServer) -> None:
        server.routes["/api/query"] = file_reply("arxiv_feed.xml", "application/atom+xml")
        threads = [
            threading.Thread(target=self.fetch, args=(server,), kwargs={"min_interval": 0.3})
            for _ in range(3)
        ]

        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        arrivals = sorted(hit.at for hit in server.hits)
        assert len(arrivals) == 3
        assert all(later - earlier >= 0.3 for earlier, later in zip(arrivals, arrivals[1:], strict=False))


# --- ingest -------------------------------------------------------------------------------------


NOW = utc(2025, 10, 6, 5, 0)


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as db:
        yield db
    engine.dispose()


def papers(session: Session) -> list[Paper]:
    return list(session.exec(select(Paper).order_by(Paper.id)))


class TestIngest:
    def test_new_papers_are_added(self, session: Session) -> None:
        report = ingest_records(session, read_feed(sample_feed_path()).records, now=NOW)

        assert (report.added, report.updated, report.unchanged, report.errors) == (75, 0, 0, [])
        assert len(papers(session)) == 75

    def test_ingesting_the_same_feed_twice_changes_nothing(self, session: Session) -> None:
        records = read_feed(sample_feed_path()).records
        ingest_records(session, records, now=NOW)

        report = ingest_records(session, records, now=NOW)

        assert (report.added, report.updated, report.unchanged) == (0, 0, 75)

    def test_dedupes_by_arxiv_id(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="First Title", arxiv_id="2101.00001")])

        report = ingest_records(
            session, [PaperRecord(title="Renamed In v2", arxiv_id="2101.00001v2", upvotes=3)]
        )

        [row] = papers(session)
        assert report.updated == 1
        assert row.title == "First Title"
        assert row.upvotes == 3

    def test_dedupes_by_title(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="Attention, Please!")])

        report = ingest_records(session, [PaperRecord(title="attention please")])

        assert report.unchanged == 1
        assert len(papers(session)) == 1

    def test_a_title_match_gains_the_arxiv_id(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="Known By Title")])

        ingest_records(session, [PaperRecord(title="Known by title", arxiv_id="2509.04664")])

        [row] = papers(session)
        assert row.arxiv_id == "2509.04664"
        assert row.arxiv_url == "https://arxiv.org/abs/2509.04664"

    def test_same_title_with_another_arxiv_id_is_reported(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="A Survey", arxiv_id="2101.00001")])

        report = ingest_records(session, [PaperRecord(title="A survey", arxiv_id="2202.00002")])

        assert len(papers(session)) == 1
        assert report.errors == [
            "record 0 ('A survey'): same title as arXiv 2101.00001, but arXiv 2202.00002"
        ]

    def test_repeats_within_one_batch_make_one_row(self, session: Session) -> None:
        batch = [
            PaperRecord(title="Twice", arxiv_id="2101.00001"),
            PaperRecord(title="Twice", arxiv_id="2101.00001", upvotes=9),
            PaperRecord(title="TWICE"),
        ]

        report = ingest_records(session, batch)

        assert (report.added, report.updated, report.unchanged) == (1, 1, 1)
        [row] = papers(session)
        assert row.upvotes == 9

    def test_reingest_updates_upvotes_and_links(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="Rising", arxiv_id="2101.00001", upvotes=4)])

        report = ingest_records(
            session,
            [
                PaperRecord(
                    title="Rising",
                    arxiv_id="2101.00001",
                    upvotes=40,
                    code_url="https://github.com/x/rising",
                    keywords=["rl"],
                )
            ],
        )

        [row] = papers(session)
        assert report.updated == 1
        assert row.upvotes == 40
        assert (row.code_url, row.keywords) == ("https://github.com/x/rising", ["rl"])

    def test_a_source_without_votes_keeps_the_known_count(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="Voted", arxiv_id="2101.00001", upvotes=40)])

        report = ingest_records(session, [PaperRecord(title="Voted", arxiv_id="2101.00001", source="arxiv")])

        assert report.unchanged == 1
        assert papers(session)[0].upvotes == 40

    def test_a_source_without_a_tldr_keeps_what_hugging_face_said(self, session: Session) -> None:
        listed = PaperRecord(
            title="Listed",
            arxiv_id="2101.00002",
            summary="It does one thing well.",
            organization="Lab",
            github_stars=12,
            comments=2,
        )
        ingest_records(session, [listed])

        report = ingest_records(session, [PaperRecord(title="Listed", arxiv_id="2101.00002", source="arxiv")])
        ingest_records(session, [PaperRecord(title="Listed", arxiv_id="2101.00002", github_stars=15)])

        [row] = papers(session)
        assert report.unchanged == 1
        assert (row.summary, row.organization, row.github_stars, row.comments) == (
            "It does one thing well.",
            "Lab",
            15,
            2,
        )

    def test_a_second_source_fills_gaps_but_never_swaps_the_description(self, session: Session) -> None:
        """A paper on Hugging Face's list that an arXiv query also returns kept flipping: arXiv's
        categories replaced the TL;DR model's keywords (the paper fell from 2nd to 49th for "LLM
        agents") and its versioned abs link the HF page, and each ingest said "updated"."""
        listed = PaperRecord(
            title="WebPilot",
            arxiv_id="2611.04242",
            url="https://huggingface.co/papers/2611.04242",
            keywords=["LLM agents", "tool use"],
            source="huggingface",
        )
        found = PaperRecord(
            title="WebPilot",
            arxiv_id="2611.04242v2",
            url="https://arxiv.org/abs/2611.04242v2",
            pdf_url="https://arxiv.org/pdf/2611.04242v2",
            keywords=["cs.CL", "cs.AI"],
            authors=["Ada Lovelace"],
            source="arxiv",
        )
        ingest_records(session, [listed])

        first = ingest_records(session, [found])
        again = [ingest_records(session, [record]) for record in (listed, found, listed, found)]

        [row] = papers(session)
        assert first.updated == 1  # it filled in the authors HF's record lacked
        assert [(r.updated, r.unchanged) for r in again] == [(0, 1)] * 4
        assert (row.url, row.keywords, row.source) == (listed.url, ["LLM agents", "tool use"], "huggingface")
        assert (row.pdf_url, row.authors) == ("https://arxiv.org/pdf/2611.04242", ["Ada Lovelace"])

    def test_hugging_face_takes_over_a_paper_first_seen_on_arxiv(self, session: Session) -> None:
        ingest_records(
            session, [PaperRecord(title="Seen", arxiv_id="2611.00001", keywords=["cs.LG"], source="arxiv")]
        )

        report = ingest_records(
            session,
            [
                PaperRecord(
                    title="Seen", arxiv_id="2611.00001", keywords=["world models"], source="huggingface"
                )
            ],
        )
        ingest_records(
            session, [PaperRecord(title="Seen", arxiv_id="2611.00001", keywords=["cs.LG"], source="arxiv")]
        )

        [row] = papers(session)
        assert report.updated == 1
        assert (row.keywords, row.url, row.source) == (
            ["world models"],
            "https://huggingface.co/papers/2611.00001",
            "huggingface",
        )

    def test_missing_date_means_ingest_time(self, session: Session) -> None:
        dated = PaperRecord(title="Dated", published_at="2025-09-04T21:26:31Z")

        ingest_records(session, [PaperRecord(title="Undated"), dated], now=NOW)

        undated_row, dated_row = papers(session)
        assert undated_row.published_at == NOW
        assert dated_row.published_at == utc(2025, 9, 4, 21, 26, 31)

    def test_a_real_date_replaces_the_stand_in(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="Later Dated")], now=NOW)

        ingest_records(
            session, [PaperRecord(title="Later Dated", published_at=datetime(2025, 10, 1))], now=NOW
        )  # a naive datetime is taken to be UTC

        assert papers(session)[0].published_at == utc(2025, 10, 1)

    def test_only_flushes_the_caller_commits(self, session: Session) -> None:
        ingest_records(session, [PaperRecord(title="Uncommitted")])
        assert len(papers(session)) == 1

        session.rollback()

        assert papers(session) == []


class TestLoadSource:
    def settings(self, **values: Any) -> Settings:
        return Settings(mode="test", **values)

    def test_file_source_defaults_to_the_sample(self) -> None:
        result = load_source(self.settings(paper_source="file", paper_source_path=None))

        assert len(result.records) == 75

    def test_an_explicit_path_wins(self, tmp_path: Path) -> None:
        path = write_json(tmp_path / "feed.json", [{"title": "Only"}])

        result = load_source(self.settings(paper_source="huggingface"), path=path)

        assert [record.title for record in result.records] == ["Only"]

    def test_the_daily_ingest_reads_the_configured_source_whatever_the_path_says(
        self, server: StubServer, tmp_path: Path, sqlite_url: str
    ) -> None:
        """An operator who moved from the file source to Hugging Face and left PAPER_SOURCE_PATH
        in the settings file got the old file again every morning: the path chose the source."""
        hf_pages(server)
        feed = write_json(tmp_path / "old-feed.json", [{"title": "From the old file"}])
        settings = self.settings(
            database_url=sqlite_url,
            paper_source="huggingface",
            paper_source_path=str(feed),
            huggingface_url=server.url("/api/daily_papers"),
        )

        report = scheduled_ingest(settings)

        assert server.hits and report["added"] == 2  # the page's two papers, not the file's one
        file_only = self.settings(database_url=sqlite_url, paper_source="file", paper_source_path=str(feed))
        assert scheduled_ingest(file_only)["added"] == 1

    def test_a_week_means_hugging_face(self, server: StubServer) -> None:
        hf_pages(server)
        settings = self.settings(huggingface_url=server.url("/api/daily_papers"))

        with httpx.Client() as client:
            result = load_source(settings, week="2025-W37", client=client)

        assert [hit.query["week"] for hit in server.hits] == ["2025-W37"]  # 4 < default limit
        assert len(result.records) == 2

    def test_an_explicit_source_uses_its_options(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = json_reply([])
        settings = self.settings(huggingface_url=server.url("/api/daily_papers"))

        load_source(settings, source="huggingface", date="2025-09-08")

        assert server.hits[0].query["date"] == "2025-09-08"

    def test_the_configured_token_is_sent(self, server: StubServer) -> None:
        server.routes["/api/daily_papers"] = json_reply([])
        settings = self.settings(
            huggingface_url=server.url("/api/daily_papers"), huggingface_token="hf_configured"
        )

        load_source(settings, source="huggingface", date="2025-09-08")

        assert server.hits[0].headers["Authorization"] == "Bearer hf_configured"

    @pytest.mark.parametrize(
        "options",
        [
            {"path": "x.json", "week": "2025-W37"},
            {"source": "arxiv", "week": "2025-W37"},
            {"source": "file", "query": "cat:cs.LG"},
        ],
    )
    def test_options_of_different_sources_are_refused(self, options: dict[str, str]) -> None:
        with pytest.raises(ValueError, match="belong to different paper sources"):
            load_source(self.settings(), **options)

    def test_an_unknown_source_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown paper source 'rss'"):
            load_source(self.settings(), source="rss")
