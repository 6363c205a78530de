"""Pausing an issue whose messages the relay keeps refusing (every statement on the pause).

A refusal that is not about the reader (a 5xx at MAIL FROM or DATA, a policy or size refusal)
will most likely happen to every message of the issue: a content filter hit, a sender policy or
an authentication set-up that changed. The batches count such refusals in a row on the issue
(`Issue.send_errors`, reset by the next 250) and pause it at `Settings.max_send_errors`, as
listmonk does with a campaign. A paused issue claims nothing until an operator resumes it.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from newsletter.models import Issue, table_of, utcnow

ISSUES = table_of(Issue)


def count_refusal(conn: Connection, issue_id: int) -> int:
    """One more message of the issue refused; returns how many in a row now."""
    refused = conn.execute(
        update(ISSUES)
        .where(ISSUES.c.id == issue_id)
        .values(send_errors=ISSUES.c.send_errors + 1)
        .returning(ISSUES.c.send_errors)
    ).scalar()
    conn.commit()
    return refused or 0


def clear_refusals(conn: Connection, issue_id: int) -> None:
    """A message went out: the refusals are no longer in a row."""
    conn.execute(
        update(ISSUES).where(ISSUES.c.id == issue_id, ISSUES.c.send_errors > 0).values(send_errors=0)
    )
    conn.commit()


def pause_issue(conn: Connection, issue_id: int, reason: str) -> bool:
    """Pause the issue; False if it already was (someone else paused it first)."""
    paused = conn.execute(
        update(ISSUES)
        .where(ISSUES.c.id == issue_id, ISSUES.c.paused_at.is_(None))
        .values(paused_at=utcnow(), pause_reason=reason[:1000])
        .returning(ISSUES.c.id)
    ).first()
    conn.commit()
    return paused is not None


def pause_reason(conn: Connection, issue_id: int) -> str | None:
    """Why the issue is paused; None if it is not."""
    reason = conn.execute(
        select(ISSUES.c.pause_reason).where(ISSUES.c.id == issue_id, ISSUES.c.paused_at.is_not(None))
    ).first()
    conn.commit()
    return None if reason is None else reason[0] or ""


def unpause_issue(conn: Connection, issue_id: int) -> bool:
    """Clear the pause and the count of refusals; False if the issue was not paused."""
    cleared = conn.execute(
        update(ISSUES)
        .where(ISSUES.c.id == issue_id, ISSUES.c.paused_at.is_not(None))
        .values(paused_at=None, pause_reason=None, send_errors=0)
        .returning(ISSUES.c.id)
    ).first()
    conn.commit()
    return cleared is not None
