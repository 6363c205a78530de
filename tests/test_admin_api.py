"""The admin JSON API over real HTTP: a uvicorn process, PostgreSQL or SQLite, an SMTP server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import select

from newsletter import admin
from newsletter.config import settings_from
from newsletter.db import session_scope
from newsletter.models import Issue, Vote
from newsletter.papers import sample_feed_path
from newsletter.web import create_app
from tests.conftest import PRODUCTION_ENV, WebServer, app_routes, process_env

TOKEN = "admin-token-0123456789-abcdef"
OLD_TOKEN = "an-older-admin-token-still-valid"


@pytest.fixture
def api(db_url, smtp_server, tmp_path) -> Iterator[httpx.Client]:
    box, port = smtp_server
    env = process_env(
        NEWSLETTER_DATABASE_URL=db_url,
        NEWSLETTER_ADMIN_TOKENS=f"{OLD_TOKEN}, {TOKEN}",
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_OUTBOX_DIR=str(tmp_path / "outbox"),
    )
    web = WebServer(env, tmp_path / "web.log")
    client = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    client.mailbox = box  # type: ignore[attr-defined]
    client.settings = settings_from(  # type: ignore[attr-defined]
        **{k.removeprefix("NEWSLETTER_").lower(): v for k, v in env.items() if k.startswith("NEWSLETTER_")}
    )
    try:
        yield client
    finally:
        client.close()
        web.stop()


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def admin_paths() -> list[tuple[str, str]]:
    app = create_app(settings_from(mode="test"))
    return [
        (method, route.path.replace("{subscriber_id}", "1").replace("{issue_id}", "1"))
        for route in app_routes(app)
        if route.path.startswith("/api/admin")
        for method in route.methods
    ]


def test_without_an_admin_token_every_route_is_401_and_says_nothing_else(api):
    admin.add_subscriber(api.settings, "ada@example.org", "", "weekly", 10, confirmed=True)
    paths = admin_paths()
    assert len(paths) >= 18
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path in paths:
            for real in (path, path.replace("/1", "/999999")):  # an id that exists, one that does not
                response = httpx.request(
                    method, api.base_url.join(real), headers=headers, json={"email": "x@y.org"}
                )
                assert response.status_code == 401, (method, real, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["detail"] == "Send an admin token as Authorization: Bearer <token>."
    # Nor do paths no route has, methods a route lacks, or a body past the cap say which exist.
    strays = [
        ("GET", "/api/admin/nonexistent", b""),
        ("GET", "/api/admin", b""),
        ("PUT", "/api/admin/subscribers/1", b"{}"),
        ("DELETE", "/api/admin/issues/1", b""),
        ("POST", "/api/admin/subscribers", b"x" * 100_000),
    ]
    for method, path, body in strays:
        response = httpx.request(method, api.base_url.join(path), content=body)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["detail"] == "Send an admin token as Authorization: Bearer <token>."
    with_token = api.put("/api/admin/subscribers/1", json={})
    assert with_token.status_code == 405  # an admin is told the truth
    old = httpx.get(api.base_url.join("/api/admin/stats"), headers={"Authorization": f"bearer {OLD_TOKEN}"})
    assert old.status_code == 200  # tokens are a list, so they can be rotated


def test_subscribers_list_search_page_change_and_erase(api):
    for name in ("ada", "bob", "cy", "dee", "eve"):
        ok(api.post("/api/admin/subscribers", json={"email": f"{name}@example.org", "confirmed": True}), 201)
    pending = ok(
        api.post("/api/admin/subscribers", json={"email": "Fay@Example.org", "interests": "robots"}), 201
    )
    assert pending["status"] == "pending"
    assert api.mailbox.wait_for(1, to="Fay@example.org")  # the double opt-in went out

    first = ok(api.get("/api/admin/subscribers", params={"limit": 4}))
    assert [r["email"] for r in first["rows"]] == [
        "ada@example.org",
        "bob@example.org",
        "cy@example.org",
        "dee@example.org",
    ]
    rest = ok(api.get("/api/admin/subscribers", params={"limit": 4, "after": first["next_after"]}))
    assert [r["email"] for r in rest["rows"]] == ["eve@example.org", "Fay@example.org"] and rest[
        "next_after"
    ] is None
    found = ok(api.get("/api/admin/subscribers", params={"search": "FAY@"}))
    assert [r["id"] for r in found["rows"]] == [pending["id"]]
    assert len(ok(api.get("/api/admin/subscribers", params={"status": "pending"}))["rows"]) == 1
    assert ok(api.get("/api/admin/subscribers", params={"search": "%"}))["rows"] == []  # no wildcards
    # No address holds a NUL: on PostgreSQL, which refuses one in text, this was a 500.
    assert ok(api.get("/api/admin/subscribers", params={"search": "fay\x00"}))["rows"] == []

    ada = first["rows"][0]["id"]
    changed = ok(
        api.patch(f"/api/admin/subscribers/{ada}", json={"interests": "protein folding", "max_papers": 3})
    )
    assert (changed["interests"], changed["max_papers"], changed["frequency"]) == (
        "protein folding",
        3,
        "weekly",
    )
    assert api.patch(f"/api/admin/subscribers/{ada}", json={"max_papers": 99}).status_code == 422
    for flag in ({"max_papers": True}, {"weekday": False}):  # pydantic read true as 1, false as Monday
        refused = api.patch(f"/api/admin/subscribers/{ada}", json=flag)
        assert refused.status_code == 422 and next(iter(flag)) in refused.json()["detail"]
    flagged = api.post("/api/admin/subscribers", json={"email": "flag@example.org", "max_papers": True})
    assert flagged.status_code == 422
    slot = ok(api.patch(f"/api/admin/subscribers/{ada}", json={"weekday": 4, "timezone": "Asia/Tokyo"}))
    assert (slot["weekday"], slot["timezone"], slot["max_papers"]) == (4, "Asia/Tokyo", 3)
    assert ok(api.patch(f"/api/admin/subscribers/{ada}", json={"weekday": 2}))["timezone"] == "Asia/Tokyo"
    listed = ok(api.patch(f"/api/admin/subscribers/{ada}", json={"weekday": ""}))  # the list's day
    assert (listed["weekday"], listed["timezone"]) == (None, "Asia/Tokyo")
    assert api.patch(f"/api/admin/subscribers/{ada}", json={"weekday": "someday"}).status_code == 422
    bad_zone = api.patch(f"/api/admin/subscribers/{ada}", json={"timezone": "Mars/Olympus"})
    assert bad_zone.status_code == 422 and "time zone" in bad_zone.json()["detail"]
    # A field the route does not know was ignored, and the consent log took a change that changed
    # nothing; neither happens now.
    assert api.patch(f"/api/admin/subscribers/{ada}", json={"bogus": 1}).status_code == 422
    assert ok(api.patch(f"/api/admin/subscribers/{ada}", json={"max_papers": 3}))["max_papers"] == 3
    history = ok(api.get(f"/api/admin/subscribers/{ada}"))
    assert [c["event"] for c in history["consent"]] == ["imported"] + ["preferences_changed"] * 4
    assert {c["user_agent"] for c in history["consent"]} == {"admin api"}  # not "cli"
    assert history["digests"] == [] and history["votes"] == []

    assert ok(api.post(f"/api/admin/subscribers/{ada}/unsubscribe"))["status"] == "unsubscribed"
    back = api.post("/api/admin/subscribers", json={"email": "ada@example.org", "confirmed": True})
    assert back.status_code == 400 and "resubscribe" in back.json()["detail"]  # not mailed again unasked
    assert api.patch(f"/api/admin/subscribers/{ada}", json={"interests": "x"}).status_code == 400
    bob = first["rows"][1]["id"]
    assert ok(api.delete(f"/api/admin/subscribers/{bob}")) == {"email": "bob@example.org", "status": "erased"}
    missing = api.get(f"/api/admin/subscribers/{bob}")
    assert missing.status_code == 404 and missing.json()["error"] == "Not found"
    again = api.post("/api/admin/subscribers", json={"email": "bob@example.org", "confirmed": True})
    assert again.status_code == 400 and "suppression list" in again.json()["detail"]
    ok(api.post("/api/admin/suppressions/lift", json={"email": "bob@example.org"}))
    ok(api.post("/api/admin/subscribers", json={"email": "bob@example.org", "confirmed": True}), 201)
    # {"confirm": true} for "confirmed": ignored, and the double opt-in went out to the reader
    misspelt = api.post("/api/admin/subscribers", json={"email": "new1@example.org", "confirm": True})
    assert misspelt.status_code == 422 and "confirm" in misspelt.text
    assert ok(api.get("/api/admin/subscribers", params={"search": "new1@"}))["rows"] == []
    bad = api.post("/api/admin/subscribers", json={"email": "not-an-address"})
    assert bad.status_code == 422 and "not valid" in bad.json()["detail"]


def test_adding_a_known_address_keeps_the_readers_preferences(api):
    """Adding an address that is already there never resets what its reader chose: before, the
    add's defaults (weekly, 10 papers) overwrote a daily reader's, and an unsubscribed reader's
    frequency and size changed before any confirmation."""
    ada = ok(api.post("/api/admin/subscribers", json={"email": "ada@example.org", "confirmed": True}), 201)[
        "id"
    ]
    ok(
        api.patch(
            f"/api/admin/subscribers/{ada}",
            json={"frequency": "daily", "max_papers": 5, "interests": "robots"},
        )
    )
    for confirmed in (False, True):
        again = ok(
            api.post("/api/admin/subscribers", json={"email": "Ada@example.org", "confirmed": confirmed}), 200
        )
        assert (again["status"], again["frequency"], again["max_papers"]) == ("confirmed", "daily", 5)
        assert again["interests"] == "robots"

    new = {"email": "eve@example.org", "max_papers": 3, "confirmed": True}
    eve = ok(api.post("/api/admin/subscribers", json=new), 201)["id"]
    ok(api.post(f"/api/admin/subscribers/{eve}/unsubscribe"))
    back = api.post(
        "/api/admin/subscribers", json={"email": "eve@example.org", "max_papers": 20, "interests": "new"}
    )
    assert ok(back, 200)["status"] == "pending" and back.json()["max_papers"] == 3  # waits for the link
    confirmed = ok(
        api.post("/api/admin/subscribers", json={"email": "eve@example.org", "confirmed": True}), 200
    )
    assert (confirmed["status"], confirmed["max_papers"], confirmed["interests"]) == ("confirmed", 3, "new")


def test_import_a_csv_upload(api):
    admin.add_subscriber(api.settings, "gone@example.org", "", "weekly", 10, confirmed=True)
    admin.remove_subscriber(api.settings, "gone@example.org", erase=False)
    csv = (
        "email,interests,frequency\nada@example.org,robots,daily\nbad,,\ngone@example.org,,\n"
        + "ada@example.org,,\n"
    )
    url = "/api/admin/subscribers/import"
    dry = ok(
        api.post(
            url,
            params={"dry_run": True, "filename": "list.csv"},
            content=csv,
            headers={"Content-Type": "text/csv"},
        )
    )
    assert dry["dry_run"] and dry["created"] == 1
    assert ok(api.get("/api/admin/subscribers", params={"status": "pending"}))["rows"] == []
    report = ok(
        api.post(
            url, params={"confirmed": True, "filename": "../../list.csv"}, content=csv.encode("utf-8-sig")
        )
    )
    assert (report["file"], report["created"], report["consent"]) == ("list.csv", 1, "imported")
    assert [(e["line"], e["email"]) for e in report["errors"]] == [(3, "bad"), (5, "ada@example.org")]
    assert [s["line"] for s in report["skipped"]] == [4]
    ada = ok(api.get("/api/admin/subscribers", params={"search": "ada@"}))["rows"][0]
    assert (ada["status"], ada["frequency"], ada["interests"]) == ("confirmed", "daily", "robots")
    form = ok(api.post(url, files={"file": ("team.csv", b"email\nbea@example.org\n", "text/csv")}))
    assert (form["file"], form["created"], form["emails_queued"]) == ("team.csv", 1, 1)
    assert api.mailbox.wait_for(1, to="bea@example.org")  # the double opt-in, sent after the import
    assert api.post(url, files={"other": ("x.csv", b"email\n")}).status_code == 422
    # The options as form fields, as README's `curl -F file=@readers.csv` invites: they were
    # dropped, and a dry run imported for real (double opt-in emails and all), as did ?dry-run=.
    upload = {"file": ("more.csv", b"email\ncy@example.org\n", "text/csv")}
    dry_form = ok(api.post(url, files=upload, data={"dry_run": "true", "confirmed": "on"}))
    assert (dry_form["dry_run"], dry_form["created"], dry_form["consent"]) == (True, 1, "imported")
    for refused in (
        api.post(url, files=upload, data={"dry-run": "true"}),
        api.post(url, files=upload, data={"dry_run": "maybe"}),
        api.post(url, params={"dry-run": "true"}, content=b"email\ncy@example.org\n"),
    ):
        assert refused.status_code == 422, refused.text
    assert ok(api.get("/api/admin/subscribers", params={"search": "cy@"}))["rows"] == []
    unreadable = api.post(url, content=b"name\nx\n")
    assert unreadable.status_code == 400 and "no 'email' column" in unreadable.json()["detail"]


def test_issues_send_pause_resume_votes_preview_test_send_and_stats(api):
    admin.ingest(api.settings, path=sample_feed_path())
    reader = ok(
        api.post(
            "/api/admin/subscribers",
            json={"email": "ada@example.org", "interests": "robots", "confirmed": True},
        ),
        201,
    )
    due = ok(api.get("/api/admin/issues/due"))
    assert due["due"] == 1 and due["papers"] == 75

    started = ok(api.post("/api/admin/issues/send", json={"frequency": "weekly"}), 202)
    assert started["planned"] == 1
    issue_id = started["issue_id"]
    deadline = time.monotonic() + 30
    while (shown := ok(api.get(f"/api/admin/issues/{issue_id}")))["counts"]["sent"] < 1:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    assert shown["failures"]["rows"] == [] and len(shown["paper_titles"]) == 75
    assert api.mailbox.wait_for(1, to="ada@example.org")
    assert ok(api.get("/api/admin/issues/due"))["due"] == 0  # she has this period's issue
    assert ok(api.post("/api/admin/issues/send", json={}), 202)["planned"] == 0  # once per period

    paused = ok(api.post(f"/api/admin/issues/{issue_id}/pause", json={"reason": "wrong papers"}))
    assert paused["pause_reason"] == "paused by the operator: wrong papers" and paused["paused_at"]
    assert api.post(f"/api/admin/issues/{issue_id}/pause", json={}).status_code == 400
    assert ok(api.post(f"/api/admin/issues/{issue_id}/resume"))["issue_id"] == issue_id
    assert api.post(f"/api/admin/issues/{issue_id}/resume").status_code == 400
    assert api.get("/api/admin/issues/999999").status_code == 404

    with session_scope(api.settings.database_url) as session:
        papers = session.exec(select(Issue)).one().paper_ids
        for paper, direction in ((papers[3], 1), (papers[5], -1)):
            session.add(
                Vote(issue_id=issue_id, paper_id=paper, subscriber_id=reader["id"], direction=direction)
            )
    voted = ok(api.get(f"/api/admin/issues/{issue_id}/top-voted"))
    assert [(v["paper_id"], v["up"], v["down"]) for v in voted] == [(papers[3], 1, 0), (papers[5], 0, 1)]
    assert (
        ok(api.get("/api/admin/deliveries", params={"state": "sent"}))["rows"][0]["email"]
        == "ada@example.org"
    )
    assert [i["id"] for i in ok(api.get("/api/admin/issues"))] == [issue_id]

    preview = ok(api.post("/api/admin/preview", json={"subscriber_id": reader["id"], "limit": 3}))
    assert len(preview["items"]) == 3 and "<html" in preview["html"]
    sent = ok(
        api.post("/api/admin/test-send", json={"to": "editor@example.org", "interests": "protein folding"})
    )
    [test] = api.mailbox.wait_for(1, to="editor@example.org")
    assert test["Subject"].startswith("[Test] ") and test["Message-ID"] == sent["message_id"]
    stats = ok(api.get("/api/admin/stats"))
    assert stats["subscribers"]["confirmed"] == 1 and stats["issues"][0]["counts"]["sent"] == 1


def test_the_openapi_document_is_for_admins_only_in_production(tmp_path, sqlite_url):
    env = process_env(
        NEWSLETTER_MODE="production",
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_ADMIN_TOKENS=TOKEN,
        **PRODUCTION_ENV,  # production refuses a sender on a reserved domain, or no postal address
    )
    web = WebServer(env, tmp_path / "web.log")
    try:
        assert httpx.get(f"{web.url}/api/openapi.json").status_code == 404
        assert httpx.get(f"{web.url}/api/admin/openapi.json").status_code == 401
        schema = ok(
            httpx.get(f"{web.url}/api/admin/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
        )
    finally:
        web.stop()
    listing = schema["paths"]["/api/admin/subscribers"]
    assert listing["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SubscriberPage"
    )
    assert "requestBody" in listing["post"] and "text/csv" in str(
        schema["paths"]["/api/admin/subscribers/import"]
    )
    models = schema["components"]["schemas"]
    assert {"ImportReport", "RowProblem", "SubscriberHistory", "IssueDetail", "TestSendResult"} <= set(models)
    for path, operations in schema["paths"].items():
        if path.startswith("/api/admin"):
            for operation in operations.values():
                answer = operation["responses"][next(iter(operation["responses"]))]
                assert "schema" in answer["content"]["application/json"], (path, operation)
