"""Finishing a message: the list headers every newsletter email carries, MIME, DKIM.

Both the journey emails (`mail/transactional.py`) and the digest (`delivery.py`) end here.
"""

from __future__ import annotations

from newsletter import links
from newsletter.bounces import verp
from newsletter.config import Settings
from newsletter.mail.message import Envelope, build_message, dkim_sign, new_message_id
from newsletter.mail.qp import Pieces
from newsletter.models import Issue, Subscriber, saved_id


def list_headers(settings: Settings, sub: Subscriber) -> dict[str, str]:
    """RFC 2369/8058 headers: one-click unsubscribe by POST to the https link, or by mail to a
    signed address of the bounce domain (`newsletter inbound serve` takes it)."""
    mailto = verp.unsubscribe_address(settings, saved_id(sub), sub.token_key, sub.token_version)
    return {
        "List-Unsubscribe": f"<{links.unsubscribe_url(settings, sub)}>, <mailto:{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def digest_envelope(settings: Settings, issue: Issue, sub: Subscriber, subject: str) -> Envelope:
    """The headers of one reader's digest: bulk, list headers, a Feedback-ID per issue."""
    headers = {
        "List-Id": settings.list_id,
        **list_headers(settings, sub),
        "Feedback-ID": f"{issue.id}:digest:{issue.frequency.value}:paperdigest",
        "Precedence": "bulk",
        "Auto-Submitted": "auto-generated",
    }
    return Envelope(
        mail_from=settings.mail_from,
        to=sub.email,
        subject=subject,
        # Names the kind of email only: ids in it would show who is which row (review L13).
        message_id=new_message_id(settings.mail_domain, "digest"),
        headers=headers,
    )


def finish_message(settings: Settings, env: Envelope, text: str | Pieces, html: str | Pieces) -> bytes:
    """Build the bytes and DKIM-sign them when a key is configured."""
    message = build_message(env, text, html)
    if settings.dkim_private_key_path and settings.dkim_selector:
        message = dkim_sign(
            message,
            selector=settings.dkim_selector,
            domain=settings.dkim_domain or settings.mail_domain,
            key_path=settings.dkim_private_key_path,
        )
    return message
