"""The web flow over HTTP (in-process ASGI client against the real app, SQLite store)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter.models import ConsentEvent, Subscriber, SubscriberStatus
from newsletter.testing import configured_session
from newsletter.tokens import Purpose, make_token
from newsletter.web import create_app
from tests.conftest import link_in, text_part


@pytest.fixture
def settings(configure, sqlite_url):
    return configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SIGNUP_RATE_PER_IP="50")


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), base_url="https://news.example.org") as c:
        yield c


def outbox(settings):
    import email
    import email.policy

    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(settings.outbox_dir.glob("*.eml"))
    ]


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def subscriber(address: str) -> Subscriber | None:
    with configured_session() as session:
        return session.exec(select(Subscriber).where(Subscriber.email_key == address)).first()


def state_snapshot():
    with configured_session() as session:
        subs = [
            (s.email, s.status, s.interests, s.frequency, s.max_papers, s.token_version)
            for s in session.exec(select(Subscriber))
        ]
        events = len(session.exec(select(ConsentEvent)).all())
    return subs, events


def confirmed(client, settings, address="ada@example.org", interests="robots"):
    client.post("/subscribe", data={"email": address, "interests": interests})
    msg = [m for m in outbox(settings) if m["To"] == address][-1]
    client.post(path_of(link_in(msg, "confirm")))
    return subscriber(address)


def test_signup_page_has_labelled_fields(client):
    page = client.get("/")
    assert page.status_code == 200
    assert '<label for="email">' in page.text and '<label for="interests">' in page.text
    assert 'action="https://news.example.org/subscribe"' in page.text


def test_signup_answer_is_identical_for_every_address_state(client, settings):
    def answer(address):
        r = client.post("/subscribe", data={"email": address, "interests": "x"})
        return r.status_code, r.text

    new = answer("new@example.org")
    pending = answer("new@example.org")
    confirmed(client, settings, "conf@example.org")
    conf = answer("conf@example.org")
    sub = confirmed(client, settings, "gone@example.org")
    client.post(f"/unsubscribe/{make_token(settings, Purpose.unsubscribe, sub.token_key, 0)}")
    gone = answer("gone@example.org")
    assert new == pending == conf == gone
    assert new[0] == 202

    def json_answer(address):
        r = client.post("/subscribe", json={"email": address, "interests": "x"})
        return r.status_code, r.json()

    assert json_answer("a1@example.org") == json_answer("conf@example.org")


def test_the_daily_cap_holds_back_mail_and_the_answer_stays_the_same(configure, sqlite_url):
    """M6: past NEWSLETTER_CONFIRMATIONS_PER_DAY an address gets no more signup emails that
    day, and the answer does not show it (no enumeration)."""
    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_CONFIRM_COOLDOWN_MINUTES="0",
        NEWSLETTER_CONFIRMATIONS_PER_DAY="2",
    )
    with TestClient(create_app(settings), base_url="https://news.example.org") as c:
        answers = [
            c.post("/subscribe", data={"email": "ada@example.org", "interests": "x"}) for _ in range(5)
        ]
    assert len({(r.status_code, r.text, tuple(r.cookies.items())) for r in answers}) == 1
    assert answers[0].status_code == 202
    assert len(outbox(settings)) == 2


def test_confirm_link_get_changes_nothing_and_post_confirms(client, settings):
    client.post("/subscribe", data={"email": "ada@example.org", "interests": "robots"})
    [msg] = outbox(settings)
    assert msg["Subject"] == "Please confirm your Paper Digest subscription"
    url = link_in(msg, "confirm")
    before = state_snapshot()
    for _ in range(3):  # a link scanner prefetching, several times
        page = client.get(path_of(url))
        assert page.status_code == 200 and '<form method="post"' in page.text
    assert client.head(path_of(url)).status_code == 200
    assert state_snapshot() == before
    done = client.post(path_of(url))
    assert done.status_code == 200 and "You're subscribed" in done.text
    assert subscriber("ada@example.org").status is SubscriberStatus.confirmed
    again = client.post(path_of(url))
    assert again.status_code == 410 and "already been used" in again.text
    welcome = outbox(settings)[-1]
    assert welcome["Subject"] == "Welcome to Paper Digest"
    assert welcome["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("path", ["/confirm/{t}", "/unsubscribe/{t}", "/preferences/{t}"])
@pytest.mark.parametrize(
    "token", ["garbage", "eyJzIjoxLCJ2IjowfQ.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb", "x" * 600]
)
def test_forged_tokens_get_a_clear_page_never_a_500(client, path, token):
    for method in ("get", "post"):
        r = getattr(client, method)(path.format(t=token))
        assert r.status_code == 400, r.text
        assert "This link is not valid" in r.text and 'href="https://news.example.org/"' in r.text


def test_token_for_another_purpose_is_refused(client, settings):
    sub = confirmed(client, settings)
    unsubscribe_token = make_token(settings, Purpose.unsubscribe, sub.token_key, sub.token_version)
    assert client.post(f"/preferences/{unsubscribe_token}", data={"interests": "x"}).status_code == 400
    assert subscriber("ada@example.org").interests == "robots"


def test_expired_confirmation_offers_a_new_link(client, settings, monkeypatch):
    import time

    client.post("/subscribe", data={"email": "ada@example.org"})
    url = link_in(outbox(settings)[0], "confirm")
    monkeypatch.setattr(settings, "confirm_token_hours", 0)
    time.sleep(1.1)
    r = client.post(path_of(url))
    assert r.status_code == 410 and "expired" in r.text and "sign up again" in r.text.lower()
    assert subscriber("ada@example.org").status is SubscriberStatus.pending


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.org\r\nBcc: x@example.org",
        "ada@example.org%0d%0aBcc:x@example.org",
        "not an address",
        "x" * 1000 + "@example.org",
        "",
    ],
)
def test_bad_addresses_get_a_4xx_and_store_nothing(client, settings, address):
    form = client.post("/subscribe", data={"email": address})
    api = client.post("/subscribe", json={"email": address})
    assert form.status_code == 400 and "Please check your address" in form.text
    assert api.status_code == 400 and api.json()["error"] == "Please check your address"
    assert state_snapshot() == ([], 0) and outbox(settings) == []


def test_addresses_a_form_or_json_garbled_are_refused_and_say_why(client, settings):
    """Invalid percent-encoding decodes to U+FFFD: never a stored address; a NUL is a control
    character, not a line break."""
    garbled = client.post(
        "/subscribe",
        content=b"email=x%ff@example.org",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert garbled.status_code == 400 and "Please check your address" in garbled.text
    nul = client.post("/subscribe", json={"email": "a\u0000@example.org"})
    assert nul.status_code == 400 and "control character" in nul.json()["detail"]
    assert state_snapshot() == ([], 0) and outbox(settings) == []


def test_refusals_name_what_is_wrong(client, settings):
    too_long = client.post("/subscribe", data={"email": "a@example.org", "interests": "x" * 2001})
    assert too_long.status_code == 400 and "Please shorten your interests" in too_long.text
    assert "Please check your address" not in too_long.text
    liked = client.post("/subscribe", json={"email": "a@example.org", "liked": [1.5]})
    assert liked.status_code == 422 and liked.json()["detail"].endswith("invalid: liked.")
    assert state_snapshot() == ([], 0)


def test_json_too_deeply_nested_is_refused_like_any_malformed_json(client, settings):
    """`[[[[…` past the parser's recursion limit: the 422 of any malformed JSON, not a 500."""
    sub = confirmed(client, settings)
    prefs = f"/preferences/{make_token(settings, Purpose.preferences, sub.token_key, sub.token_version)}"
    before = state_snapshot()
    broken = client.post("/subscribe", content=b"{", headers={"content-type": "application/json"})
    for path in ("/subscribe", prefs):
        r = client.post(path, content=b"[" * 60_000, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json() == broken.json(), path
    assert state_snapshot() == before


@pytest.mark.parametrize(
    ("content_type", "json_body"),
    [
        ("Application/JSON", True),
        ("application/json; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("application/jsonx", False),
        ("text/json", False),
    ],
)
def test_the_body_is_json_exactly_when_its_media_type_says_so(client, content_type, json_body):
    r = client.post(
        "/subscribe", content=b'{"email": "ada@example.org"}', headers={"content-type": content_type}
    )
    if json_body:
        assert r.status_code == 202 and r.json()["status"] == "ok"
    else:  # read as a form: no email field
        assert r.status_code == 422 and "email" in r.text and "<h1>" in r.text


def test_oversize_body_and_wrong_types_are_refused(client, settings):
    assert (
        client.post("/subscribe", data={"email": "a@example.org", "interests": "x" * 100_000}).status_code
        == 413
    )
    assert (
        client.post("/subscribe", data={"email": "a@example.org", "interests": "x" * 3000}).status_code == 400
    )
    assert client.post("/subscribe", json=["a@example.org"]).status_code == 422
    assert client.post("/subscribe", json={"email": 5}).status_code == 422
    assert (
        client.post(
            "/subscribe", content=b"\xff\xfe", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert state_snapshot() == ([], 0)


def test_signups_are_rate_limited_per_ip(configure, sqlite_url):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SIGNUP_RATE_PER_IP="3")
    with TestClient(create_app(settings)) as client:
        codes = [client.post("/subscribe", data={"email": f"u{i}@example.org"}).status_code for i in range(5)]
    assert codes == [202, 202, 202, 429, 429]
    assert len(state_snapshot()[0]) == 3


def test_one_click_unsubscribe_rfc8058(client, settings):
    sub = confirmed(client, settings)
    welcome = outbox(settings)[-1]
    url = welcome["List-Unsubscribe"].split(",")[0].strip(" <>")
    before = state_snapshot()
    assert client.get(path_of(url)).status_code == 200  # a scanner's GET changes nothing
    assert state_snapshot() == before
    client.cookies.clear()
    for _ in range(2):  # idempotent
        r = client.post(
            path_of(url),
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert r.status_code == 200
    r = client.post(path_of(url), files={"List-Unsubscribe": (None, "One-Click")}, follow_redirects=False)
    assert r.status_code == 200
    assert subscriber("ada@example.org").status is SubscriberStatus.unsubscribed
    assert sub.id == subscriber("ada@example.org").id


def test_consent_record_tells_the_page_button_from_a_mail_clients_one_click(client, settings):
    def unsubscribed_via(address: str) -> list[str]:
        with configured_session() as session:
            rows = session.exec(select(ConsentEvent).where(ConsentEvent.email_key == address))
            return [e.event for e in rows if e.event.startswith("unsubscribed:")]

    for address, body in [
        ("button@example.org", {}),
        ("client@example.org", {"List-Unsubscribe": "One-Click"}),
    ]:
        sub = confirmed(client, settings, address)
        url = f"/unsubscribe/{make_token(settings, Purpose.unsubscribe, sub.token_key, sub.token_version)}"
        assert client.post(url, data=body).status_code == 200
    assert unsubscribed_via("button@example.org") == ["unsubscribed:page"]
    assert unsubscribed_via("client@example.org") == ["unsubscribed:one-click"]
    # A body that cannot be read as a form still unsubscribes (parsing it for the record
    # answered 400 to a multipart body without a boundary, and the reader stayed subscribed)
    sub = confirmed(client, settings, "odd@example.org")
    url = f"/unsubscribe/{make_token(settings, Purpose.unsubscribe, sub.token_key, sub.token_version)}"
    odd = client.post(
        url, content=b"List-Unsubscribe=One-Click", headers={"content-type": "multipart/form-data"}
    )
    assert odd.status_code == 200 and subscriber("odd@example.org").status is SubscriberStatus.unsubscribed


def test_preferences_change_export_and_erase(client, settings):
    confirmed(client, settings)
    welcome = outbox(settings)[-1]
    prefs = path_of(link_in(welcome, "preferences"))
    page = client.get(prefs)
    assert page.status_code == 200 and "robots" in page.text
    r = client.post(prefs, data={"interests": "diffusion models", "frequency": "daily", "max_papers": "5"})
    assert r.status_code == 200 and "Saved" in r.text
    sub = subscriber("ada@example.org")
    assert (sub.interests, sub.frequency.value, sub.max_papers) == ("diffusion models", "daily", 5)
    for bad in ({"frequency": "hourly"}, {"max_papers": "500"}, {"max_papers": "many"}):
        r = client.post(prefs, data=bad)
        assert r.status_code == 400 and 'role="alert"' in r.text
    assert subscriber("ada@example.org").max_papers == 5
    # Refused, the page comes back with what was typed: it came back with the stored values and
    # every edit was lost (an empty number field, which the browser sends, was enough).
    typed = {"interests": "graph <b>neural</b> nets", "frequency": "weekly", "max_papers": "", "weekday": "4"}
    r = client.post(prefs, data={**typed, "timezone": "Asia/Tokyo"})
    assert r.status_code == 400 and "whole number" in r.text
    assert ">graph &lt;b&gt;neural&lt;/b&gt; nets</textarea>" in r.text
    assert '<option value="weekly" selected>' in r.text and '<option value="4" selected>' in r.text
    assert '<option value="Asia/Tokyo" selected>' in r.text
    assert subscriber("ada@example.org").interests == "diffusion models"  # nothing half-written
    data = client.get(prefs + "/export")
    assert data.status_code == 200 and data.json()["email"] == "ada@example.org"
    assert [e["event"] for e in data.json()["consent_events"]][:2] == ["signup_requested", "confirmed"]
    to_ada = lambda: [m["Subject"] for m in outbox(settings) if m["To"] == "ada@example.org"]  # noqa: E731
    assert len(to_ada()) == 2  # the confirmation and the welcome
    assert client.post(prefs + "/erase", data={}).status_code == 400  # needs the box ticked
    assert subscriber("ada@example.org") is not None and len(to_ada()) == 2
    r = client.post(prefs + "/erase", data={"confirm": "yes"})
    assert r.status_code == 200 and "erased" in r.text
    assert subscriber("ada@example.org") is None
    assert to_ada() == []  # the mail written to her in the outbox folder went too
    assert client.get(prefs).status_code == 410


def test_json_clients_get_json_from_preferences_erase_and_unsubscribe(client, settings):
    sub = confirmed(client, settings)
    prefs = f"/preferences/{make_token(settings, Purpose.preferences, sub.token_key, sub.token_version)}"
    unsubscribe = f"/unsubscribe/{make_token(settings, Purpose.unsubscribe, sub.token_key, 0)}"
    bad = client.post(prefs, json={"max_papers": 0})
    assert bad.status_code == 400 and bad.json() == {
        "error": "Please check your preferences",
        "detail": "Papers per digest must be between 1 and 50.",
    }
    for flag in ({"max_papers": True}, {"weekday": True}, {"max_papers": 3.5}):  # 1 paper, Tuesday
        refused = client.post(prefs, json=flag)  # and the field is named, not its union's "str, int"
        assert refused.status_code == 422 and refused.json()["detail"].endswith(f": {next(iter(flag))}.")
    assert (subscriber("ada@example.org").max_papers, subscriber("ada@example.org").weekday) == (10, None)
    as_json = {"accept": "application/json"}
    assert client.post(prefs + "/reset-profile", headers=as_json).json() == {"status": "reset"}
    for refused in (
        client.post(prefs + "/erase", data={"confirm": "no"}, headers=as_json),
        client.post(prefs + "/erase", json={"confirm": "no"}),
    ):
        assert refused.status_code == 400 and refused.json()["error"] == "Nothing was erased"
    erased = client.post(prefs + "/erase", data={"confirm": "yes"}, headers=as_json)
    assert erased.status_code == 200 and erased.json()["status"] == "erased" and "error" not in erased.json()
    assert subscriber("ada@example.org") is None
    gone = client.post(unsubscribe, headers=as_json)
    assert gone.status_code == 200 and gone.json() == {"status": "unsubscribed"}
    one_click = client.post(
        unsubscribe,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert one_click.status_code == 200 and one_click.text == "Unsubscribed.\n"  # as before


def test_healthz_reports_the_database(client, configure):
    assert client.get("/healthz").json() == {"status": "ok"}
    broken = configure(NEWSLETTER_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(create_app(broken)) as c:
        r = c.get("/healthz")
    assert r.status_code == 503


def test_unknown_pages_and_methods_get_the_error_page_or_json(client):
    for r, title in ((client.get("/nope"), "Page not found"), (client.put("/confirm/x"), "Not allowed")):
        assert r.status_code in (404, 405) and f"<h1>{title}</h1>" in r.text
        assert "Not Found" not in r.text and "Method Not Allowed" not in r.text
    assert 'href="https://news.example.org/">Go to the signup page' in client.get("/nope").text
    # Every method the path takes (RFC 9110): it named the first route's only, "GET, HEAD"
    assert client.put("/confirm/x").headers["allow"] == "GET, HEAD, POST"
    assert client.delete("/unsubscribe/x").headers["allow"] == "GET, HEAD, POST"
    assert client.post("/archive").headers["allow"] == "GET, HEAD"
    api = client.get("/nope", headers={"accept": "application/json"})
    assert api.status_code == 404 and api.json()["error"] == "Page not found"
    assert "no page at this address" in api.json()["detail"]


@pytest.mark.parametrize("path", ["/archive/0", "/archive/abc", "/archive/99999999999", "/archive/12"])
def test_an_archive_id_no_issue_has_is_a_404(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "<h1>Page not found</h1>" in r.text


def test_get_subscribe_goes_back_to_the_signup_page(client):
    """A refused signup leaves the browser on /subscribe: reloading it shows the form again."""
    r = client.get("/subscribe", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "https://news.example.org/"
    assert client.head("/subscribe", follow_redirects=False).status_code == 303


def test_a_trailing_slash_redirects_to_the_base_url_never_to_the_host_header(client):
    for headers in (
        {},
        {"host": "evil.example"},
        {"host": "evil.example", "x-forwarded-host": "evil.example"},
    ):
        r = client.get("/archive/?page=2", headers=headers, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "https://news.example.org/archive?page=2"
    assert client.get("/nope/", follow_redirects=False).status_code == 404


def test_head_answers_like_get_without_a_body(client):
    for path in ("/", "/healthz", "/archive", "/archive.xml", "/subscribe/challenge"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"], path
        assert head.headers["content-security-policy"] == get.headers["content-security-policy"], path
    assert client.head("/nope").status_code == 404
    assert client.head("/webhooks/bounce").status_code == 405


def test_paper_text_and_input_are_escaped_in_pages(client):
    r = client.post(
        "/subscribe", data={"email": "<script>alert(1)</script>@x", "interests": "<script>alert(2)</script>"}
    )
    assert r.status_code == 400
    assert "<script>alert" not in r.text and "&lt;script&gt;" in r.text


def test_confirmation_email_text(client, settings):
    client.post("/subscribe", data={"email": "ada@example.org"})
    body = text_part(outbox(settings)[0])
    assert "https://news.example.org/confirm/" in body and "72 hours" in body


def test_a_confirmation_that_could_not_be_sent_does_not_start_the_cooldown(configure, sqlite_url):
    from tests.conftest import free_port

    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(free_port()),
    )  # nothing listens there
    with TestClient(create_app(settings)) as client:
        r = client.post("/subscribe", data={"email": "ada@example.org"})
    assert r.status_code == 202  # the same answer as always
    sub = subscriber("ada@example.org")
    assert sub.status is SubscriberStatus.pending
    assert sub.confirm_sent_at is None  # so trying again sends at once, not in 10 minutes
