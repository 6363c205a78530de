"""Journey emails assembled from a template inlined once equal a plain render + premailer."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from newsletter.mail.journey_html import render_journey_email
from newsletter.mail.render import render_email
from newsletter.mail.transactional import journey_context, transactional_message
from newsletter.models import Frequency, Subscriber, SubscriberStatus

KINDS = {
    "confirm": SubscriberStatus.pending,
    "welcome": SubscriberStatus.confirmed,
    "already_subscribed": SubscriberStatus.confirmed,
}
# Readers whose values exercise escaping in text and attributes, line ends and an empty value
# (the welcome email says something else when a reader has no interests).
READERS = [
    ("ada@example.org", "robot learning", Frequency.weekly),
    ('o\'brien+"news"&co@example.org', '<b>LLMs</b> & d\'été "agents"\r\nnext line\rcr', Frequency.daily),
    ("zoë@exämple.org", "", Frequency.weekly),
]


def untimed(text: str) -> str:
    # Signed links carry the second they were made in; two renders may straddle one.
    return re.sub(r"(https://news\.example\.org/[\w/]+/)[\w-]+\.[\w-]+\.[\w-]+", r"\1TOKEN", text)


def reader(i: int, kind: str) -> Subscriber:
    address, interests, frequency = READERS[i]
    return Subscriber(
        id=100 + i,
        email=address,
        email_key=address.lower(),
        status=KINDS[kind],
        interests=interests,
        frequency=frequency,
        token_version=0,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_assembled_journey_email_equals_a_plain_render_and_inline(configure, kind):
    settings = configure()
    for i in range(len(READERS)):  # one cached template serves every reader in turn
        sub = reader(i, kind)
        context = journey_context(settings, kind, sub)
        assert render_journey_email(settings, kind, context) == render_email(settings, kind, context)

        msg = email.message_from_bytes(
            transactional_message(settings, kind, sub), policy=email.policy.default
        )
        sent = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
        plain = render_email(settings, kind, journey_context(settings, kind, sub)).html
        assert untimed(sent) == untimed(plain)


def test_each_reader_gets_only_their_own_values(configure):
    settings = configure()
    first, second = reader(0, "welcome"), reader(1, "welcome")
    html = render_journey_email(settings, "welcome", journey_context(settings, "welcome", second)).html
    render_journey_email(settings, "welcome", journey_context(settings, "welcome", first))
    assert "ada@example.org" not in html and "robot learning" not in html
    assert "&lt;b&gt;LLMs&lt;/b&gt; &amp; d'été" in html and "<b>LLMs" not in html
