"""Paper sources answer with whatever a server sends: XML that defines entities, in any
encoding (security review L3), and bodies that are huge or never end (L4).

The sources fetch from a real HTTP server on 127.0.0.1 (`tests/test_sources.StubServer`, or a
raw socket server for a slow drip).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from newsletter.papers import SourceError, fetch_arxiv, fetch_daily_papers, load_source
from tests.test_sources import StubServer, server  # noqa: F401 - `server` is a fixture

ATOM = "http://www.w3.org/2005/Atom"
LAUGHS = "".join(
    f'<!ENTITY l{n} "{f"&l{n - 1};" * 10 if n else "ha"}">' for n in range(10)
)  # l9 is 10^9 "ha"s


def arxiv(server: StubServer, body: bytes):  # noqa: F811 - the fixture's name
    server.routes["/api/query"] = (200, "application/atom+xml", body)
    return fetch_arxiv(base_url=server.url("/api/query"), query="cat:cs.LG", min_interval=0.01)


def feed(doctype: str, title: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE feed [{doctype}]>'
        f'<feed xmlns="{ATOM}"><entry><id>http://arxiv.org/abs/2101.00001v1</id>'
        f"<title>{title}</title></entry></feed>"
    )


# Before the fix each of these passed the byte search for "<!DOCTYPE"; then the first was
# expanded into a paper's title, and expat alone (>= 2.4.1) stopped the other two.
@pytest.mark.parametrize(
    ("doctype", "title"),
    [
        pytest.param('<!ENTITY x "Injected by the feed">', "&x;", id="internal-entity"),
        pytest.param(LAUGHS, "&l9;", id="billion-laughs"),
        pytest.param('<!ENTITY x SYSTEM "file:///etc/passwd">', "&x;", id="external-entity"),
    ],
)
def test_a_dtd_is_refused_in_utf16_before_any_entity_is_read(server, doctype, title):  # noqa: F811
    body = feed(doctype, title).encode("utf-16")
    assert b"<!DOCTYPE" not in body
    started = time.monotonic()
    with pytest.raises(SourceError, match="refusing XML with a DOCTYPE or entities"):
        arxiv(server, body)
    assert time.monotonic() - started < 2


def test_a_dtd_is_refused_in_utf8_too(server):  # noqa: F811
    body = feed('<!ENTITY x "y">', "&x;").replace("UTF-16", "UTF-8").encode()
    with pytest.raises(SourceError, match="DOCTYPE"):
        arxiv(server, body)


def test_json_nested_too_deeply_is_a_source_error(server):  # noqa: F811
    """Before the fix: RecursionError out of `response.json()`, a traceback for `papers ingest`."""
    server.routes["/api/daily_papers"] = (200, "application/json", b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(SourceError, match="returned JSON nested too deeply to read"):
        fetch_daily_papers(base_url=server.url("/api/daily_papers"), week="2026-W48")


# ---- bodies that are huge or never end (L4) ----------------------------------------------------


class Misbehaving(ThreadingHTTPServer):
    """Answers every GET with `answer(handler)`; keeps each request's headers in `seen`."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        super().__init__(("127.0.0.1", 0), _Misbehave)
        self.answer = answer
        self.seen: list[dict[str, str]] = []
        self.sent = 0  # body bytes written so far

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/api"


class _Misbehave(BaseHTTPRequestHandler):
    server: Misbehaving

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))
        with contextlib.suppress(ConnectionError):  # the client hung up, as it should
            self.server.answer(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def misbehaving(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[Misbehaving]:
    stub = Misbehaving(answer)
    thread = threading.Thread(target=stub.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.shutdown()
        stub.server_close()
        thread.join()


def fifty_megabytes(declared: bool) -> Callable[[BaseHTTPRequestHandler], None]:
    """A JSON list of 50 MB (of spaces), with or without a Content-Length saying so."""
    size, chunk = 50 * 2**20, b" " * 2**20

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declared:
            handler.send_header("Content-Length", str(size + 2))
        handler.end_headers()
        handler.wfile.write(b"[")
        for _ in range(size // len(chunk)):
            handler.wfile.write(chunk)
            handler.server.sent += len(chunk)
        handler.wfile.write(b"]")

    return answer


def drip(handler: BaseHTTPRequestHandler) -> None:
    """An empty JSON list, one byte every 0.2 s: 5 s in all."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    for byte in b"[" + b" " * 23 + b"]":
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
@pytest.mark.parametrize("source", ["huggingface", "arxiv"])
def test_a_body_past_the_byte_cap_is_refused(configure, source, declared):
    with misbehaving(fifty_megabytes(declared)) as stub:
        settings = configure(NEWSLETTER_HUGGINGFACE_URL=stub.url, NEWSLETTER_ARXIV_URL=stub.url)
        # Before the fix all 50 MB were read (and, for Hugging Face, accepted as an empty page).
        with pytest.raises(SourceError, match=f"sent more than {20 * 2**20} bytes; stopped reading"):
            load_source(settings, source=source, week="2026-W48" if source == "huggingface" else None)
        assert stub.sent < 40 * 2**20  # it stopped reading, so the server could not send it all


def test_a_slow_drip_is_cut_off_at_the_deadline(configure):
    with misbehaving(drip) as stub:
        settings = configure(NEWSLETTER_HUGGINGFACE_URL=stub.url, NEWSLETTER_INGEST_TIMEOUT_SECONDS="1")
        started = time.monotonic()
        with pytest.raises(SourceError, match="took longer than 1 s; stopped reading"):
            load_source(settings, week="2026-W48")  # before the fix: 5 s, then accepted
        assert time.monotonic() - started < 3


def test_the_token_does_not_follow_a_redirect_to_another_origin():
    def elsewhere(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"[]")

    with misbehaving(elsewhere) as other:

        def redirect(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(302)
            handler.send_header("Location", other.url + "?week=2026-W48")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with misbehaving(redirect) as hub:
            result = fetch_daily_papers(base_url=hub.url, week="2026-W48", token="hf_secret_token")
    assert result.records == []
    assert hub.seen[0]["Authorization"] == "Bearer hf_secret_token"
    assert "Authorization" not in other.seen[0]  # another port is another origin
