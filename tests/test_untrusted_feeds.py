"""Paper sources answer with whatever a server sends: XML that defines entities, in any
encoding (security review L3), and bodies that are huge or never end (L4).

The sources fetch from a real HTTP server on 127.0.0.1 (`tests/test_sources.StubServer`, or a
raw socket server for a slow drip).
"""

from __future__ import annotations

import time

import pytest

from newsletter.papers import SourceError, fetch_arxiv
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
