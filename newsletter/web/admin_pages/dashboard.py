"""The dashboard: subscribers by status, a 12-week growth chart, the last issues."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.dashboard import Week, issue_summaries, weekly_growth
from newsletter.stats import subscriber_counts
from newsletter.web.admin_pages.session import PATH, Admin
from newsletter.web.admin_pages.views import page
from newsletter.web.deps import SessionDep, SettingsDep

router = APIRouter(prefix=PATH, include_in_schema=False)

CHART_WIDTH, CHART_HEIGHT, CHART_TOP = 600, 180, 16  # the SVG's user units


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    label: str  # the week, e.g. "3 Nov"
    week: Week


def chart_bars(weeks: list[Week]) -> list[Bar]:
    """One bar per week, its height the readers at the week's end, scaled to the tallest."""
    tallest = max((w.readers for w in weeks), default=0) or 1
    slot = CHART_WIDTH // max(len(weeks), 1)
    bars = []
    for i, week in enumerate(weeks):
        height = round(week.readers / tallest * (CHART_HEIGHT - CHART_TOP))
        bars.append(
            Bar(
                x=i * slot + 4,
                y=CHART_HEIGHT - height,
                width=slot - 8,
                height=height,
                label=f"{week.start.day} {week.start:%b}",
                week=week,
            )
        )
    return bars


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request, admin: Admin, session: SessionDep, settings: SettingsDep) -> Response:
    weeks = weekly_growth(session, settings.local_now())
    return page(
        request,
        "dashboard.html",
        admin,
        statuses=subscriber_counts(session),
        bars=chart_bars(weeks),
        chart={"width": CHART_WIDTH, "height": CHART_HEIGHT},
        issues=issue_summaries(session, limit=8),
    )
