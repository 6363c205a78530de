"""`newsletter subscribers update` and `newsletter issues pause`: the admin API's functions, from
the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from newsletter import admin
from newsletter.cli import app
from newsletter.config import get_settings

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
    issue_id = admin.send_now(settings, "weekly")["issue_id"]
    assert "paused by the operator: wrong papers" in run(
        "issues", "pause", str(issue_id), "--reason", "wrong papers"
    )
    assert admin.pause_of(get_settings(), issue_id) == "paused by the operator: wrong papers"
    assert "paused already" in run("issues", "pause", str(issue_id), code=1)
    assert "no issue" in run("issues", "pause", "999", code=1)
    run("issues", "resume", str(issue_id))
    assert admin.pause_of(get_settings(), issue_id) is None
