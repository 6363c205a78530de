"""Each reader's digest arrives at their own slot: their weekday, NEWSLETTER_DIGEST_HOUR in their zone.

Beat ticks hourly; a tick plans the readers whose local slot has arrived into the issue of that
slot's period, read in the reader's zone. These tests run the ticks an hour apart with a real
SMTP server (and PostgreSQL for the races), and read what each reader received after each tick.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from newsletter import admin
from newsletter.delivery import scheduled_send
from newsletter.errors import ConfigError
from newsletter.models import Delivery, DeliveryState, Frequency, Issue, Subscriber, SubscriberStatus
from newsletter.papers import sample_feed_path
from newsletter.schedule import arrived, due_slots, last_slot, next_digest_text
from newsletter.testing import configured_session
from newsletter.web import create_app
from tests.conftest import link_in, text_part

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday; ISO week 49
# (address, zone, weekday, frequency, the UTC hour of their first tick at or after 08:00 local)
READERS = [
    ("tokyo@example.org", "Asia/Tokyo", 0, Frequency.weekly, MONDAY - timedelta(hours=1)),  # Sun 23:00 UTC
    ("berlin@example.org", "Europe/Berlin", 0, Frequency.weekly, MONDAY + timedelta(hours=7)),
    ("paris@example.org", "Europe/Paris", 0, Frequency.weekly, MONDAY + timedelta(hours=7)),  # Berlin's slot
    ("newyork@example.org", "America/New_York", 0, Frequency.weekly, MONDAY + timedelta(hours=13)),
    ("kolkata@example.org", "Asia/Kolkata", None, Frequency.daily, MONDAY + timedelta(hours=3)),  # 08:30 IST
    (
        "list@example.org",
        None,
        None,
        Frequency.weekly,
        MONDAY + timedelta(hours=8),
    ),  # the list's: UTC, Monday
]
TICKS = [MONDAY - timedelta(hours=4) + timedelta(hours=h) for h in range(22)]  # Sun 20:00 .. Mon 17:00


def add_readers(readers=READERS) -> None:
    with configured_session() as session:
        for address, zone, weekday, frequency, _ in readers:
            session.add(
                Subscriber(
                    email=address,
                    email_key=address,
                    status=SubscriberStatus.confirmed,
                    interests="language models",
                    frequency=frequency,
                    timezone=zone,
                    weekday=weekday,
                )
            )


@pytest.fixture
def mailing(configure, smtp_server):
    def settings_for(db_url: str, papers: bool = True):
        box, port = smtp_server
        settings = configure(
            NEWSLETTER_DATABASE_URL=db_url,
            NEWSLETTER_SMTP_HOST="127.0.0.1",
            NEWSLETTER_SMTP_PORT=str(port),
            NEWSLETTER_TIMEZONE="UTC",
            NEWSLETTER_DIGEST_WEEKDAY="0",
        )
        if papers:
            admin.ingest(settings, path=sample_feed_path())
        return settings, box

    return settings_for


def received(box) -> dict[str, int]:
    got: dict[str, int] = {}
    for _, rcpts, _ in box.messages:
        for rcpt in rcpts:
            got[rcpt] = got.get(rcpt, 0) + 1
    return got


def test_readers_in_three_zones_get_their_digest_in_the_tick_of_their_local_slot(mailing, pg_url):
    settings, box = mailing(pg_url)
    assert settings.digest_hour == 8  # the default local hour
    add_readers()
    first_tick = {}
    for tick in TICKS:
        scheduled_send(settings, tick)
        for address, count in received(box).items():
            assert count == 1, f"{address} got {count} digests by {tick}"
            first_tick.setdefault(address, tick)
    assert first_tick == {address: due for address, _, _, _, due in READERS}
    with configured_session() as session:
        issues = {(i.frequency, i.period) for i in session.exec(select(Issue))}
        sent = session.exec(select(Delivery).where(Delivery.state == DeliveryState.sent)).all()
    # One weekly edition for week 49 whichever zone asked first; Kolkata's day (the UTC slot,
    # with no daily reader, makes none of its own: issue 12).
    assert issues == {(Frequency.weekly, "2026-W49"), (Frequency.daily, "2026-11-30")}
    assert len(sent) == len(READERS)
    assert "week 49 of 2026" in str(box.parsed("tokyo@example.org")[0]["Subject"])


def test_a_second_run_of_every_tick_and_a_second_planner_send_nothing_twice(mailing, pg_url):
    settings, box = mailing(pg_url)
    add_readers()
    for tick in TICKS:
        # Two beats (or a beat and a restarted one) fire the same tick at once.
        runs = [threading.Thread(target=scheduled_send, args=(settings, tick)) for _ in range(2)]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
    for tick in TICKS:  # and every tick once more, as after a restart that replays the hours
        scheduled_send(settings, tick)
    assert received(box) == {address: 1 for address, *_ in READERS}
    with configured_session() as session:
        rows = session.exec(select(Delivery)).all()
    assert len(rows) == len(READERS)


def test_a_missed_tick_is_made_up_within_the_catch_up_window_and_not_after(mailing, sqlite_url):
    settings, box = mailing(sqlite_url)
    add_readers(READERS[1:2])  # Berlin, Monday 08:00 local = 07:00 UTC
    scheduled_send(settings, MONDAY + timedelta(hours=6))  # 07:00 Berlin: not yet
    assert received(box) == {}
    # Beat was down from 07:00 to 11:00 UTC: the 12:00 tick (13:00 Berlin) still sends it.
    scheduled_send(settings, MONDAY + timedelta(hours=12))
    assert received(box) == {"berlin@example.org": 1}

    later = "late@example.org"
    add_readers([(later, "Europe/Berlin", 0, Frequency.weekly, None)])
    # Confirmed after the window: no old issue on Tuesday, the next Monday's instead.
    scheduled_send(settings, MONDAY + timedelta(days=1, hours=7))
    assert later not in received(box)
    scheduled_send(settings, MONDAY + timedelta(days=7, hours=7))
    assert received(box) == {"berlin@example.org": 2, later: 1}


def test_a_slot_before_any_paper_makes_no_empty_edition_and_sends_once_papers_come(
    mailing, sqlite_url, caplog
):
    """A tick before the first ingest made the week's edition with no paper: every reader's row
    ended "nothing new to send", the edition stayed empty all week (its papers are fixed when it
    is made) and the archive listed it. Now the tick makes nothing and says so; the next tick
    within the catch-up hours sends, once papers are there."""
    settings, box = mailing(sqlite_url, papers=False)
    add_readers(READERS[1:2])  # Berlin, Monday 08:00 local = 07:00 UTC
    assert scheduled_send(settings, MONDAY + timedelta(hours=7)) == []
    with configured_session() as session:
        assert session.exec(select(Issue)).all() == []
    [said] = [r for r in caplog.records if r.getMessage() == "schedule.no_papers"]
    assert said.period == "2026-W49"
    admin.ingest(settings, path=sample_feed_path())
    scheduled_send(settings, MONDAY + timedelta(hours=9))
    assert received(box) == {"berlin@example.org": 1}


CASES = [
    # Monday 07:00 in Tokyo is Sunday 22:00 UTC: Tokyo is in ISO week 49, UTC still in 48.
    ("Asia/Tokyo", 0, datetime(2026, 11, 29, 22, 0, tzinfo=UTC), "2026-W49", "2026-11-30"),
    # Sunday 07:00 in Los Angeles is Sunday 15:00 UTC.
    ("America/Los_Angeles", 6, datetime(2026, 11, 29, 15, 0, tzinfo=UTC), "2026-W48", "2026-11-29"),
]


@pytest.mark.parametrize(("zone", "weekday", "fired_at", "week", "day"), CASES)
def test_the_lists_own_slot_plans_its_editions_named_by_the_local_period(
    configure, sqlite_url, zone, weekday, fired_at, week, day
):
    settings = configure(
        NEWSLETTER_DATABASE_URL=sqlite_url,
        NEWSLETTER_TIMEZONE=zone,
        NEWSLETTER_DIGEST_WEEKDAY=str(weekday),
        NEWSLETTER_DIGEST_HOUR="7",
    )
    admin.ingest(settings, path=sample_feed_path())
    scheduled_send(settings, fired_at - timedelta(hours=1))  # an hour early: nothing yet
    with configured_session() as session:
        assert session.exec(select(Issue)).all() == []
    scheduled_send(settings, fired_at)
    # An operator's `send --now` at the same moment finds the issues beat planned.
    assert admin.send_now(settings, "weekly", now=fired_at)["planned"] == 0
    assert admin.send_now(settings, "daily", dry_run=True, now=fired_at)["period"] == day
    with configured_session() as session:
        issues = {(i.frequency, i.period) for i in session.exec(select(Issue))}
    assert issues == {(Frequency.weekly, week)}  # no daily reader: no daily edition (issue 12)


def test_the_day_before_locally_makes_no_weekly_issue(configure, sqlite_url):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_TIMEZONE="Asia/Tokyo")
    admin.ingest(settings, path=sample_feed_path())
    add_readers([("daily@example.org", None, None, Frequency.daily, None)])
    scheduled_send(settings, MONDAY - timedelta(days=1, hours=1))  # Sunday 08:00 in Tokyo
    with configured_session() as session:
        assert {i.frequency for i in session.exec(select(Issue))} == {Frequency.daily}


def test_the_slot_stays_at_the_local_hour_across_a_dst_change(configure):
    settings = configure(NEWSLETTER_DIGEST_HOUR="8")
    berlin = ZoneInfo("Europe/Berlin")
    # Sunday 29 March 2026 Berlin moves to summer time: 08:00 is 06:00 UTC, not 07:00.
    now = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    slot = last_slot(now.astimezone(berlin), 8, 6)
    assert (slot.hour, slot.astimezone(UTC).hour) == (8, 6)
    assert arrived(settings, slot, now)
    assert not arrived(settings, slot, now - timedelta(hours=1))


def test_an_unknown_time_zone_is_refused_at_start(configure):
    with pytest.raises(ConfigError, match="NEWSLETTER_TIMEZONE: .*unknown time zone 'Mars/Olympus'"):
        configure(NEWSLETTER_TIMEZONE="Mars/Olympus")


# ---- choosing a schedule ---------------------------------------------------------------------


def test_signup_keeps_a_known_browser_zone_and_the_preferences_page_changes_day_and_zone(
    configure, sqlite_url
):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SIGNUP_RATE_PER_IP="50")
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        for address, zone in (("ada@example.org", "Asia/Tokyo"), ("bob@example.org", "Mars/Olympus")):
            assert client.post("/subscribe", data={"email": address, "timezone": zone}).status_code == 202
        with configured_session() as session:
            zones = {s.email: s.timezone for s in session.exec(select(Subscriber))}
        # An unknown zone (the reader cannot see or fix the hidden field) means the list's zone.
        assert zones == {"ada@example.org": "Asia/Tokyo", "bob@example.org": None}

        confirm = [p for p in settings.outbox_dir.glob("*.eml") if "ada@example.org" in p.read_text()]
        client.post("/" + link_in(_parse(confirm[0]), "confirm").split("/", 3)[3])
        welcome = [_parse(p) for p in settings.outbox_dir.glob("*.eml")]
        welcome = [m for m in welcome if "Welcome" in str(m["Subject"])][0]
        said = " ".join(text_part(welcome).split())
        assert re.search(
            r"arrives ((on|next) \w+day|today|tomorrow) at 08:00 Asia/Tokyo, with the week's", said
        ) or (
            "arrives within the hour" in said  # run on a Monday morning in Tokyo
        ), said
        prefs = "/" + link_in(welcome, "preferences").split("/", 3)[3]
        page = client.get(prefs)
        assert '<option value="Asia/Tokyo" selected>' in page.text
        r = client.post(prefs, data={"weekday": "4", "timezone": "America/Sao_Paulo"})
        assert r.status_code == 200 and "Saved" in r.text
        assert _schedule("ada@example.org") == (4, "America/Sao_Paulo")
        for bad in ({"weekday": "8", "timezone": "UTC"}, {"weekday": "1", "timezone": "Mars/Olympus"}):
            r = client.post(prefs, data=bad)
            assert r.status_code == 400 and 'role="alert"' in r.text
            assert _schedule("ada@example.org") == (4, "America/Sao_Paulo")  # nothing half-written
        assert client.post(prefs, data={"weekday": "sun", "timezone": ""}).status_code == 200
        assert _schedule("ada@example.org") == (6, None)


def test_a_json_client_changes_day_or_zone_alone_and_the_other_stays(configure, sqlite_url):
    """Fields left out stay as they are; an empty one is the list's (what the form's first
    option sends)."""
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        prefs = _confirmed_preferences(client, settings, "ada@example.org")
        for change, expected in (
            ({"weekday": "fri", "timezone": "Asia/Tokyo"}, (4, "Asia/Tokyo")),
            ({"timezone": "Europe/Paris"}, (4, "Europe/Paris")),
            ({"weekday": "mon"}, (0, "Europe/Paris")),
            ({"interests": "robots"}, (0, "Europe/Paris")),
            ({"weekday": None, "timezone": None}, (0, "Europe/Paris")),
            ({"timezone": ""}, (0, None)),
            ({"weekday": ""}, (None, None)),
        ):
            assert client.post(prefs, json=change).json() == {"status": "saved"}, change
            assert _schedule("ada@example.org") == expected, change


@pytest.mark.parametrize(
    "zone", ["posix/Asia/Tokyo", "right/Europe/Paris", "localtime", "Factory", "posixrules"]
)
def test_only_iana_zone_names_are_offered_and_taken(configure, sqlite_url, zone):
    """zoneinfo loads these files too, but they are not zones a reader can pick: the page
    would show none selected and the next save would lose it. Older names the database still
    links (Asia/Calcutta, which some browsers report) are taken."""
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url, NEWSLETTER_SIGNUP_RATE_PER_IP="50")
    with TestClient(create_app(settings), base_url="https://news.example.org") as client:
        prefs = _confirmed_preferences(client, settings, "ada@example.org")
        r = client.post(prefs, json={"timezone": zone})
        assert r.status_code == 400 and "Unknown time zone" in r.json()["detail"]
        page = client.get(prefs).text
        assert f'value="{zone}"' not in page and '<option value="Asia/Calcutta" >' in page
        assert client.post(prefs, json={"timezone": "Asia/Calcutta"}).status_code == 200
        assert _schedule("ada@example.org") == (None, "Asia/Calcutta")
        client.post("/subscribe", data={"email": "bob@example.org", "timezone": zone})
        assert _schedule("bob@example.org") == (None, None)  # the list's, as for any unknown zone


def _confirmed_preferences(client, settings, address: str) -> str:
    """Sign `address` up and confirm it; the path of its preferences page."""
    client.post("/subscribe", data={"email": address})
    confirm = [_parse(p) for p in settings.outbox_dir.glob("*.eml") if address in p.read_text()]
    client.post("/" + link_in(confirm[0], "confirm").split("/", 3)[3])
    welcome = [_parse(p) for p in settings.outbox_dir.glob("*.eml")]
    welcome = [m for m in welcome if "Welcome" in str(m["Subject"]) and m["To"] == address][0]
    return "/" + link_in(welcome, "preferences").split("/", 3)[3]


def _parse(path):
    import email
    import email.policy

    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def _schedule(address: str) -> tuple[int | None, str | None]:
    with configured_session() as session:
        sub = session.exec(select(Subscriber).where(Subscriber.email_key == address)).one()
        return sub.weekday, sub.timezone


def test_a_stored_zone_the_tz_database_no_longer_knows_stops_no_one_else(mailing, sqlite_url, caplog):
    settings, box = mailing(sqlite_url)
    add_readers(READERS[1:2] + [("lost@example.org", "Mars/Olympus", 0, Frequency.weekly, None)])
    scheduled_send(settings, MONDAY + timedelta(hours=7))
    assert received(box) == {"berlin@example.org": 1}
    assert "schedule.unknown_zone" in caplog.text


def test_no_daily_edition_is_made_or_archived_in_a_period_without_daily_readers(mailing, pg_url):
    """Beat ticks every hour; with weekly readers only, Monday's slot makes the weekly edition
    and no day makes a daily one, and the archive and its feed list only the weekly (issue 12)."""
    settings, _box = mailing(pg_url)
    add_readers([("weekly@example.org", None, None, Frequency.weekly, None)])
    add_readers([("left@example.org", None, None, Frequency.daily, None)])
    with configured_session() as session:  # a daily reader who left counts for nothing
        left = session.exec(select(Subscriber).where(Subscriber.email == "left@example.org")).one()
        left.status = SubscriberStatus.unsubscribed
        session.add(left)
    monday, tuesday = MONDAY + timedelta(hours=8), MONDAY + timedelta(days=1, hours=8)
    assert len(scheduled_send(settings, monday)) == 1
    assert scheduled_send(settings, tuesday) == []
    # An operator's explicit `send --now --frequency daily` still makes one, sent to nobody:
    # it stays out of the archive too.
    admin.send_now(settings, "daily", now=tuesday)
    with configured_session() as session:
        issues = {i.id: (i.frequency, i.period) for i in session.exec(select(Issue))}
    assert sorted(issues.values()) == [(Frequency.daily, "2026-12-01"), (Frequency.weekly, "2026-W49")]
    weekly = {i for i, (freq, _) in issues.items() if freq is Frequency.weekly}
    with TestClient(create_app(settings)) as client:
        archive, feed = client.get("/archive").text, client.get("/archive.xml").text
    assert {int(i) for i in re.findall(r'/archive/(\d+)"', archive)} == weekly
    assert {int(i) for i in re.findall(r"<id>[^<]*/archive/(\d+)</id>", feed)} == weekly

    add_readers([("daily@example.org", None, None, Frequency.daily, None)])  # a daily reader at last
    assert len(scheduled_send(settings, MONDAY + timedelta(days=2, hours=8))) == 1


# ---- what the welcome email promises -----------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("frequency", "weekday", "local_now", "promised"),
    [
        # Wednesday 2 Dec 2026, Berlin; slots at 08:00, catch-up 6 hours
        (Frequency.daily, None, datetime(2026, 12, 2, 5, 50), "today at 08:00 Europe/Berlin"),
        (Frequency.daily, None, datetime(2026, 12, 2, 9, 30), "within the hour"),
        (Frequency.daily, None, datetime(2026, 12, 2, 15, 0), "tomorrow at 08:00 Europe/Berlin"),
        (Frequency.weekly, 4, datetime(2026, 12, 2, 12, 0), "on Friday at 08:00 Europe/Berlin"),
        (Frequency.weekly, 3, datetime(2026, 12, 2, 20, 0), "tomorrow at 08:00 Europe/Berlin"),
        (Frequency.weekly, 2, datetime(2026, 12, 2, 7, 0), "today at 08:00 Europe/Berlin"),
        (Frequency.weekly, 2, datetime(2026, 12, 2, 10, 0), "within the hour"),
        (Frequency.weekly, 2, datetime(2026, 12, 2, 16, 0), "next Wednesday at 08:00 Europe/Berlin"),
        (Frequency.weekly, None, datetime(2026, 12, 2, 16, 0), "on Monday at 08:00 Europe/Berlin"),
    ],
)
def test_the_welcome_promises_the_slot_the_ticks_will_send_in(
    configure, frequency, weekday, local_now, promised
):
    """A daily reader confirming at 05:50 was told "tomorrow at 08:00" and got the digest at
    08:00 that day; one confirming within the catch-up hours gets it at the next tick."""
    settings = configure(NEWSLETTER_TIMEZONE="UTC", NEWSLETTER_DIGEST_WEEKDAY="0")
    reader = Subscriber(
        email="a@example.org", email_key="a@example.org", frequency=frequency, weekday=weekday
    )
    reader.timezone = "Europe/Berlin"
    now = local_now.replace(tzinfo=BERLIN)
    assert next_digest_text(settings, reader, now) == promised
    # and the ticks agree: the slot the text names is the first one due at or after `now`
    if promised == "within the hour":
        assert due_slots(settings, [(frequency, "Europe/Berlin", weekday)], now)


def test_a_daily_readers_welcome_speaks_of_the_days_papers(configure):
    """The welcome said "the week's trending papers" to daily readers too."""
    from newsletter.mail.journey_html import render_journey_email
    from newsletter.mail.transactional import journey_context

    settings = configure()
    for frequency, word in ((Frequency.daily, "day's"), (Frequency.weekly, "week's")):
        reader = Subscriber(id=1, email="a@example.org", email_key="a@example.org", frequency=frequency)
        rendered = render_journey_email(settings, "welcome", journey_context(settings, "welcome", reader))
        for part in (" ".join(rendered.text.split()), rendered.html):
            assert f"with the {word} trending papers" in part and f"get the {word} most popular" in part
        # and the confirmation said "a weekly email" to every reader
        asked = render_journey_email(settings, "confirm", journey_context(settings, "confirm", reader))
        for part in (" ".join(asked.text.split()), asked.html):
            assert f"a {frequency.value} email of trending research papers" in part
