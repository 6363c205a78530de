"""The naive design, for contrast in benchmarks/send_throughput.py --naive.

`celery -A benchmarks.naive_app worker` runs the product's tasks unchanged except that every
digest is rendered from the full template and CSS-inlined with premailer per recipient (what
`newsletter.digests` avoids by inlining once per issue). The benchmark pairs it with
NEWSLETTER_BATCH_SIZE=1, so each recipient is also its own Celery task and SMTP connection.
Nothing in the product imports this module.
"""

from __future__ import annotations

from newsletter import digests
from newsletter.mail.render import RenderedEmail, render_email
from workers.celery_app import app

__all__ = ["app"]


def _render_per_recipient(self: digests.DigestRenderer, sub, items) -> RenderedEmail:
    links = digests.reader_links(self.settings, sub, self.issue.id)
    context = digests.full_context(self.settings, self.issue, sub, items, links)
    return render_email(self.settings, "digest", context)  # Jinja + premailer, every time


digests.DigestRenderer.render = _render_per_recipient
