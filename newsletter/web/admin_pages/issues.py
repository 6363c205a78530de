"""Issues: the list, one issue's progress while it sends, its failures, pause and resume."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from newsletter import admin as operator
from newsletter import inspection, operations
from newsletter.errors import NotFound, OperatorError
from newsletter.web.admin_pages.session import PATH, Admin, AdminForm
from newsletter.web.admin_pages.views import back_to, page
from newsletter.web.deps import IssueId, SettingsDep
from newsletter.web.responses import error_response

router = APIRouter(prefix=PATH, include_in_schema=False)

NO_ISSUE = "There is no such issue."
REFRESH_SENDING = 3  # seconds between reloads while rows are being sent
FAILURES_SHOWN = 100  # the rest: `newsletter deliveries list --issue ID`
REFRESH_DEFERRED = 30  # only retries left: they come on the backoff's schedule


def progress(counts: dict[str, int]) -> dict[str, int]:
    """Total rows, rows finished (sent, failed, skipped) and rows still open."""
    total = sum(counts.values())
    open_rows = counts["pending"] + counts["sending"] + counts["deferred"]
    return {"total": total, "done": total - open_rows, "open": open_rows}


def refresh_after(counts: dict[str, int], paused: bool) -> int | None:
    """How soon the page reloads itself (a meta refresh: no script), None when nothing moves."""
    if paused:
        return None
    if counts["pending"] + counts["sending"]:
        return REFRESH_SENDING
    return REFRESH_DEFERRED if counts["deferred"] else None


@router.get("/issues", response_class=HTMLResponse)
def issue_list(request: Request, admin: Admin, settings: SettingsDep) -> Response:
    return page(request, "issues.html", admin, issues=operator.list_issues(settings))


@router.get("/issues/{issue_id}", response_class=HTMLResponse)
def issue_detail(request: Request, issue_id: IssueId, admin: Admin, settings: SettingsDep) -> Response:
    try:
        issue = operator.show_issue(settings, issue_id)
    except OperatorError:
        return error_response(request, 404, "Page not found", NO_ISSUE)
    paused = issue["paused_at"] is not None
    failures = inspection.issue_failures(settings, issue_id, limit=FAILURES_SHOWN)
    return page(
        request,
        "issue.html",
        admin,
        issue=issue,
        progress=progress(issue["counts"]),
        refresh=refresh_after(issue["counts"], paused),
        paused=paused,
        failures=failures.rows,
        more_failures=failures.next_after is not None,
    )


@router.post("/issues/{issue_id}/pause")
def pause(request: Request, issue_id: IssueId, _: AdminForm, settings: SettingsDep) -> Response:
    try:
        operations.pause_issue(settings, issue_id, "")
    except NotFound:
        return error_response(request, 404, "Page not found", NO_ISSUE)
    except OperatorError:  # paused already (by the relay's refusals, or someone else)
        return back_to(request, f"/admin/issues/{issue_id}", "already_paused")
    return back_to(request, f"/admin/issues/{issue_id}", "paused")


@router.post("/issues/{issue_id}/resume")
def resume(request: Request, issue_id: IssueId, _: AdminForm, settings: SettingsDep) -> Response:
    try:
        operator.resume_issue(settings, issue_id)
    except NotFound:
        return error_response(request, 404, "Page not found", NO_ISSUE)
    except OperatorError:  # not paused: nothing to resume
        return back_to(request, f"/admin/issues/{issue_id}", "not_paused")
    return back_to(request, f"/admin/issues/{issue_id}", "resumed")
