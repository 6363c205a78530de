"""`newsletter subscribers import`: a CSV as an operator has one, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func
from sqlmodel import select

from newsletter import admin
from newsletter.config import get_settings
from newsletter.db import session_scope
from newsletter.models import ConsentEvent, JourneyEmail, Subscriber, SubscriberStatus
from tests.conftest import cli_with

HEADER = "email,interests,frequency,max_papers,weekday,timezone\n"


@pytest.fixture
def cli(configure, db_url):
    return cli_with(configure, db_url)


def import_json(cli, path, *flags: str) -> dict:
    return json.loads(cli("subscribers", "import", str(path), "--json", *flags).stdout)


def subscribers() -> dict[str, Subscriber]:
    with session_scope(get_settings().database_url) as session:
        return {s.email: s for s in session.exec(select(Subscriber))}


def count(table) -> int:
    with session_scope(get_settings().database_url) as session:
        return session.exec(select(func.count()).select_from(table)).one()


def sent_to() -> list[str]:
    """Who the outbox folder sender delivered to (the journey emails, sent by the sweep)."""
    return sorted(path.name.split("-", 2)[2] for path in get_settings().outbox_dir.glob("*.eml"))


def test_new_addresses_get_the_double_opt_in_and_bad_rows_are_reported_by_line(cli, tmp_path):
    csv = tmp_path / "readers.csv"
    csv.write_bytes(
        "\ufeff".encode()  # Excel's byte-order mark
        + (
            HEADER + "Ada@Example.org,graph neural networks,weekly,5,mon,Europe/Berlin\n"
            "not-an-address,x,,,,\n"
            '"evil@example.org\r\nBcc: all@example.org",,,,,\n'
            "ada@example.org,again,,,,\n"
            "bob@example.org,,hourly,,,\n"
            "carol@example.org,,,51,,\n"
            "dan@example.org,,,,someday,\n"
            "eve@example.org,,,,,Mars/Olympus\n"
            "fred@example.org,robots,daily,3,6,Asia/Tokyo\n"
            "\n"
            "gus@example.org\n"
        ).encode()
    )
    report = import_json(cli, csv)
    assert report["rows"] == 10 and report["created"] == 3 and report["emails_queued"] == 3
    errors = {e["line"]: e["reason"] for e in report["errors"]}
    assert sorted(errors) == [3, 4, 6, 7, 8, 9, 10]
    assert "not valid" in errors[3]
    assert "line break" in errors[4]
    assert "same address as line 2" in errors[6]
    assert "hourly" in errors[7] and "51" in errors[8] and "someday" in errors[9] and "Mars" in errors[10]
    subs = subscribers()
    assert set(subs) == {"Ada@example.org", "fred@example.org", "gus@example.org"}
    assert all(s.status is SubscriberStatus.pending for s in subs.values())
    assert subs["fred@example.org"].interests == "robots" and subs["fred@example.org"].max_papers == 3
    assert subs["gus@example.org"].max_papers == get_settings().default_max_papers
    assert (subs["Ada@example.org"].weekday, subs["Ada@example.org"].timezone) == (0, "Europe/Berlin")
    assert (subs["fred@example.org"].weekday, subs["fred@example.org"].timezone) == (6, "Asia/Tokyo")
    assert (subs["gus@example.org"].weekday, subs["gus@example.org"].timezone) == (None, None)  # the list's
    # No broker here: the sweep queued after commit sent each confirmation through the outbox.
    assert sent_to() == ["Ada_example_org.eml", "fred_example_org.eml", "gus_example_org.eml"]
    with session_scope(get_settings().database_url) as session:
        emails = session.exec(select(JourneyEmail)).all()
        assert {(e.kind, e.state.value) for e in emails} == {("confirm", "sent")}
        events = session.exec(select(ConsentEvent)).all()
        assert {e.event for e in events} == {"signup_requested"}
        assert all(e.user_agent == "import: readers.csv" for e in events)


def test_an_import_never_brings_back_or_overrides_readers(cli, tmp_path):
    settings = get_settings()
    admin.add_subscriber(settings, "kept@example.org", "robots", "weekly", 10, confirmed=True)
    admin.add_subscriber(settings, "gone@example.org", "", "weekly", 10, confirmed=True)
    admin.remove_subscriber(settings, "gone@example.org", erase=False)
    admin.add_subscriber(settings, "erased@example.org", "", "weekly", 10, confirmed=True)
    admin.remove_subscriber(settings, "erased@example.org", erase=True)
    admin.add_subscriber(settings, "waiting@example.org", "", "weekly", 10, confirmed=False)
    emails_before = len(sent_to())
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,interests,max_papers\n"
        "kept@example.org,cooking,4\n"
        "gone@example.org,,\n"
        "ERASED@example.org,,\n"
        "waiting@example.org,chemistry,\n"
    )
    for flags in ((), ("--confirmed",)):
        report = import_json(cli, csv, *flags)
        assert report["created"] == 0 and report["updated"] == 0
        skipped = {s["line"]: s["reason"] for s in report["skipped"]}
        assert "unsubscribed" in skipped[3] and "erased" in skipped[4] and sorted(skipped) == [3, 4]
    subs = subscribers()
    assert "erased@example.org" not in {e.lower() for e in subs}
    assert subs["gone@example.org"].status is SubscriberStatus.unsubscribed
    assert subs["kept@example.org"].interests == "robots" and subs["kept@example.org"].max_papers == 10
    # --confirmed: the operator holds the pending address's consent now; without --update the
    # file's preferences for that known reader are not taken
    assert subs["waiting@example.org"].status is SubscriberStatus.confirmed
    assert subs["waiting@example.org"].interests == ""
    assert len(sent_to()) == emails_before  # nobody got an email from the import

    report = import_json(cli, csv, "--update")
    assert report["updated"] == 2 and len(report["skipped"]) == 2
    subs = subscribers()
    assert subs["kept@example.org"].interests == "cooking" and subs["kept@example.org"].max_papers == 4
    assert subs["waiting@example.org"].interests == "chemistry"
    assert subs["gone@example.org"].status is SubscriberStatus.unsubscribed

    # The same file again changes nothing, so nothing is counted or logged as a change.
    consent_rows = count(ConsentEvent)
    report = import_json(cli, csv, "--update")
    assert report["updated"] == 0 and report["unchanged"] == 2
    assert count(ConsentEvent) == consent_rows


def test_confirmed_import_records_the_file_and_sends_nothing(cli, tmp_path):
    csv = tmp_path / "held-consent.csv"
    csv.write_text("email,frequency\nada@example.org,daily\nbob@example.org,\n")
    report = import_json(cli, csv, "--confirmed")
    assert (report["created"], report["emails_queued"], report["consent"]) == (2, 0, "imported")
    subs = subscribers()
    assert {s.status for s in subs.values()} == {SubscriberStatus.confirmed}
    assert subs["ada@example.org"].frequency.value == "daily"
    assert sent_to() == []
    with session_scope(get_settings().database_url) as session:
        events = session.exec(select(ConsentEvent)).all()
    assert [(e.event, e.wording) for e in events] == [("imported", "imported from held-consent.csv")] * 2


def test_dry_run_writes_nothing(cli, tmp_path):
    csv = tmp_path / "readers.csv"
    csv.write_text("email\nada@example.org\nbob@example.org\nbob@example.org\n")
    result = cli("subscribers", "import", str(csv), "--dry-run")
    assert (
        "Would import" in result.stdout
        and "created 2" in result.stdout
        and "Nothing written" in result.stdout
    )
    assert "line 4" in result.output and "same address as line 3" in result.output
    assert count(Subscriber) == count(ConsentEvent) == count(JourneyEmail) == 0
    assert sent_to() == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"name,interests\nada@example.org,x\n", "no 'email' column"),
        (b"email,colour\nada@example.org,red\n", "unknown column 'colour'"),
        ("email\nad\u00e9@example.org\n".encode("latin-1"), "not UTF-8"),
        (
            b'email,interests\nada@example.org,"' + b"x" * 200_000 + b"\n",
            "line 2: the file cannot be read as CSV",
        ),
        # A stray quote on line 3 of 501: the csv module read the 498 lines after it into one
        # field, and the import took 2 readers, reported one bad row and dropped the rest unsaid.
        (
            b'email,interests\noq0@example.org,robots\noq1@example.org,"graph neural nets\n'
            + b"".join(b"oq%d@example.org,robots\n" % i for i in range(2, 500)),
            "line 3: the file cannot be read as CSV from here",
        ),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line_and_imports_nothing(cli, tmp_path, content, words):
    csv = tmp_path / "broken.csv"
    csv.write_bytes(content)
    result = cli("subscribers", "import", str(csv), ok=False)
    assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output
    assert count(Subscriber) == 0


def test_a_superscript_digit_is_a_bad_row_not_a_traceback(cli, tmp_path):
    """ "²".isdigit() is True and int("²") raises: a max_papers or weekday cell of "²" ended the
    import in a ValueError traceback (a 500 from the API and the admin page)."""
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,max_papers,weekday\nada@example.org,\u00b2,\nbob@example.org,,\u00b2\ncy@example.org,3,fri\n"
    )
    report = import_json(cli, csv, "--confirmed")
    assert report["created"] == 1 and [e["line"] for e in report["errors"]] == [2, 3]
    assert "max_papers" in report["errors"][0]["reason"] and "weekday" in report["errors"][1]["reason"]
    assert set(subscribers()) == {"cy@example.org"}
