"""Absolute links for emails and pages, each carrying a purpose-scoped signed token."""

from __future__ import annotations

from collections.abc import Callable

from newsletter.config import Settings
from newsletter.models import Subscriber
from newsletter.tokens import Purpose, make_token


def _url(settings: Settings, path: str) -> str:
    return settings.base_url.rstrip("/") + path


def confirm_url(settings: Settings, sub: Subscriber) -> str:
    token = make_token(settings, Purpose.confirm, sub.token_key, sub.token_version)
    return _url(settings, f"/confirm/{token}")


def unsubscribe_url(settings: Settings, sub: Subscriber) -> str:
    token = make_token(settings, Purpose.unsubscribe, sub.token_key, sub.token_version)
    return _url(settings, f"/unsubscribe/{token}")


def preferences_url(settings: Settings, sub: Subscriber) -> str:
    token = make_token(settings, Purpose.preferences, sub.token_key, sub.token_version)
    return _url(settings, f"/preferences/{token}")


def view_url(settings: Settings, sub: Subscriber, issue_id: int) -> str:
    token = make_token(settings, Purpose.view, sub.token_key, sub.token_version, i=issue_id)
    return _url(settings, f"/issues/{issue_id}/view/{token}")


def vote_url(settings: Settings, sub: Subscriber, issue_id: int, paper_id: int, direction: int) -> str:
    return vote_urls(settings, sub, issue_id)(paper_id, direction)


VOTE_DIRECTIONS = {1: "more", -1: "less"}


def vote_urls(settings: Settings, sub: Subscriber, issue_id: int) -> Callable[[int, int], str]:
    """`vote_url` for one reader's many cards: (paper id, direction) -> the link. One token, signed
    once per reader and issue, stands for the reader's votes on that issue's papers; the paper
    and the direction follow it in the path (`/vote/{token}/{paper id}/more|less`), and a vote
    for a paper the issue did not carry is refused (`feedback.read_vote`)."""
    token = make_token(settings, Purpose.vote, sub.token_key, sub.token_version, i=issue_id)
    base = _url(settings, f"/vote/{token}/")
    return lambda paper_id, direction: f"{base}{paper_id}/{VOTE_DIRECTIONS[direction]}"


def archive_url(settings: Settings, issue_id: int | None = None) -> str:
    return _url(settings, "/archive" if issue_id is None else f"/archive/{issue_id}")
