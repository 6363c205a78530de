"""`newsletter subscribers update` and `newsletter issues pause`: the admin API's functions, from
the command line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from newsletter import admin
from newsletter.cli import app
from newsletter.cli.subscribers import checked_change
from newsletter.config import get_settings
from newsletter.papers import sample_feed_path
from newsletter.validation import InvalidInput

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_update_a_reader_and_pause_an_issue(configure, sqlite_url):
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    admin.add_subscriber(settings, "ada@example.org", "robots", "weekly", 10, confirmed=True)
    changed = json.loads(run("subscribers", "update", "ADA@example.org", "--max-papers", "4", "--json"))
    assert (changed["interests"], changed["max_papers"], changed["frequency"]) == ("robots", 4, "weekly")
    events = [e["event"] for e in admin.export(get_settings(), "ada@example.org")["consent_events"]]
    assert events == ["imported", "preferences_changed"]
    assert "no subscriber" in run("subscribers", "update", "bob@example.org", "--max-papers", "3", code=1)
    admin.remove_subscriber(settings, "ada@example.org", erase=False)
    assert "unsubscribed" in run("subscribers", "update", "ada@example.org", "--interests", "x", code=1)

    admin.add_subscriber(settings, "bob@example.org", "", "weekly", 10, confirmed=True)
    admin.ingest(settings, path=sample_feed_path())
    issue_id = admin.send_now(settings, "weekly")["issue_id"]
    assert "paused by the operator: wrong papers" in run(
        "issues", "pause", str(issue_id), "--reason", "wrong papers"
    )
    assert admin.pause_of(get_settings(), issue_id) == "paused by the operator: wrong papers"
    assert "paused already" in run("issues", "pause", str(issue_id), code=1)
    assert "no issue" in run("issues", "pause", "999", code=1)
    run("issues", "resume", str(issue_id))
    assert admin.pause_of(get_settings(), issue_id) is None


def test_bad_values_for_update_are_one_line_as_for_add(configure, sqlite_url):
    """A 5000-character --interests ended in pydantic's ValidationError (and a 100-character
    --timezone too), where `subscribers add` says one line: now update says the same line."""
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    admin.add_subscriber(settings, "ada@example.org", "robots", "weekly", 10, confirmed=True)
    long = "x" * 5000
    added = runner.invoke(app, ["subscribers", "add", "bob@example.org", "--interests", long])
    for option, value, words in [
        ("--interests", long, "Interests are limited to 2000 characters."),
        ("--timezone", "x" * 100, "Unknown time zone"),
        ("--weekday", "someday", "The weekday must be 0-6"),
        ("--weekday", "\u00b2", "The weekday must be 0-6"),  # "²".isdigit(), then int() raised
    ]:
        result = runner.invoke(app, ["subscribers", "update", "ada@example.org", option, value])
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
        if option == "--interests":
            assert result.stderr == added.stderr == "Error: Interests are limited to 2000 characters.\n"
    unchanged = admin.export(get_settings(), "ada@example.org")
    assert (unchanged["interests"], unchanged["timezone"], unchanged["weekday"]) == ("robots", None, None)
    # What the checks of each option let through, the model refuses: one line naming the option.
    with pytest.raises(InvalidInput, match=r"^--max-papers: Input should be less than or equal to 50$"):
        checked_change(None, None, 99, None, None)


def test_update_takes_weekday_names_and_frequencies_as_the_import_does(configure, sqlite_url):
    """README: a weekday is 0-6 or a day's name, and the CSV import takes WEEKLY; update refused
    --weekday SUN ("Input should be a valid integer") and --frequency DAILY."""
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    admin.add_subscriber(settings, "ada@example.org", "robots", "weekly", 10, confirmed=True)
    for weekday, frequency, day in [("SUN", "DAILY", 6), ("Monday", "Weekly", 0), ("4", "daily", 4)]:
        run("subscribers", "update", "ada@example.org", "--weekday", weekday, "--frequency", frequency)
        changed = json.loads(run("subscribers", "export", "ada@example.org"))
        assert (changed["weekday"], changed["frequency"]) == (day, frequency.lower()), (weekday, frequency)


def test_update_puts_a_reader_back_on_the_lists_day_and_zone(configure, sqlite_url):
    """An empty --weekday or --timezone is the list's, as on the preferences page: --weekday ""
    was refused, so a reader given their own day could never be put back on the list's."""
    settings = configure(NEWSLETTER_DATABASE_URL=sqlite_url)
    admin.add_subscriber(settings, "ada@example.org", "robots", "weekly", 10, confirmed=True)
    said = run("subscribers", "update", "ada@example.org", "--weekday", "fri", "--timezone", "Asia/Tokyo")
    assert said.startswith("ada@example.org: weekly (Friday, Asia/Tokyo), up to 10 papers")  # it never said
    assert "weekly (Friday, Asia/Tokyo)" in run("subscribers", "show", "ada@example.org")
    slot = json.loads(run("subscribers", "export", "ada@example.org"))
    assert (slot["weekday"], slot["timezone"]) == (4, "Asia/Tokyo")
    said = run("subscribers", "update", "ada@example.org", "--weekday", "")
    assert "weekly (the list's day, Asia/Tokyo)" in said
    slot = json.loads(run("subscribers", "export", "ada@example.org"))
    assert (slot["weekday"], slot["timezone"]) == (None, "Asia/Tokyo")  # the zone left as it was
    said = run("subscribers", "update", "ada@example.org", "--timezone", " ", "--frequency", "daily")
    assert "daily (every day, the list's zone)" in said
    slot = json.loads(run("subscribers", "export", "ada@example.org"))
    assert (slot["weekday"], slot["timezone"]) == (None, None)
