"""/api/admin/issues, deliveries, preview, test send and stats: editions and what went out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from newsletter import admin, inspection, operations
from newsletter.inspection import DeliveryPage
from newsletter.models import MAX_ROW_ID, DeliveryState, Frequency
from newsletter.operations import IssueSummary, SendStarted, VotedPaper
from newsletter.testsend import TestSendResult, send_test
from newsletter.web.admin_api.models import (
    DueReport,
    IssueDetail,
    PauseBody,
    Preview,
    PreviewBody,
    Resumed,
    SendBody,
    Stats,
    TestSendBody,
)
from newsletter.web.auth import admin_caller
from newsletter.web.deps import FormOrJson, FormOrJsonRoute, IssueId, SettingsDep

router = APIRouter(
    prefix="/api/admin",
    tags=["admin: issues"],
    dependencies=[Depends(admin_caller)],
    route_class=FormOrJsonRoute,
)


@router.get("/issues")
def list_issues(settings: SettingsDep) -> list[IssueSummary]:
    """Every issue, newest first, with its deliveries counted by state."""
    return [IssueSummary.model_validate(row) for row in admin.list_issues(settings)]


@router.get("/issues/due")
def due(settings: SettingsDep, frequency: Frequency = Frequency.weekly) -> DueReport:
    """What sending now would do (a dry run): this period, readers due, candidate papers."""
    return DueReport.model_validate(admin.send_now(settings, frequency.value, dry_run=True))


@router.post("/issues/send", status_code=202)
def send_now(settings: SettingsDep, body: Annotated[SendBody, Depends(FormOrJson(SendBody))]) -> SendStarted:
    """Plan this period's issue and hand it to the workers (without a broker: this process,
    after the answer). A second call in the period plans nothing new."""
    return operations.start_send(settings, body.frequency)


@router.get("/issues/{issue_id}")
def show_issue(
    settings: SettingsDep,
    issue_id: IssueId,
    failures: Annotated[int, Query(ge=1, le=inspection.MAX_LIMIT)] = 100,
) -> IssueDetail:
    """One issue: counts, papers, and its first `failures` failed or deferred deliveries."""
    shown = admin.show_issue(settings, issue_id)
    return IssueDetail.model_validate(
        {**shown, "failures": inspection.issue_failures(settings, issue_id, failures)}
    )


@router.post("/issues/{issue_id}/pause")
def pause(
    settings: SettingsDep, issue_id: IssueId, body: Annotated[PauseBody, Depends(FormOrJson(PauseBody))]
) -> IssueSummary:
    """Stop sending the issue until it is resumed."""
    return operations.pause_issue(settings, issue_id, body.reason)


@router.post("/issues/{issue_id}/resume")
def resume(settings: SettingsDep, issue_id: IssueId) -> Resumed:
    """Clear the pause, put refused deliveries back and dispatch the issue again."""
    return Resumed.model_validate(admin.resume_issue(settings, issue_id))


@router.get("/issues/{issue_id}/top-voted")
def top_voted(
    settings: SettingsDep, issue_id: IssueId, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> list[VotedPaper]:
    """The issue's papers readers voted "more like this" most (net of "less")."""
    return operations.top_voted(settings, issue_id, limit)


@router.get("/deliveries")
def deliveries(
    settings: SettingsDep,
    state: Annotated[list[DeliveryState] | None, Query(description="Default: failed and deferred.")] = None,
    issue_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=inspection.MAX_LIMIT)] = 100,
) -> DeliveryPage:
    """Deliveries by state with the server's reply, oldest first; follow `next_after`."""
    states = [s.value for s in state] if state else None
    return inspection.list_deliveries(settings, states, issue_id=issue_id, limit=limit, after=after)


@router.post("/preview")
def preview(settings: SettingsDep, body: Annotated[PreviewBody, Depends(FormOrJson(PreviewBody))]) -> Preview:
    """The digest a subscriber (or some interests) would get from this period's papers."""
    email = operations.email_of(settings, body.subscriber_id) if body.subscriber_id else None
    return Preview.model_validate(
        admin.preview(settings, interests=body.interests, email=email, limit=body.limit)
    )


@router.post("/test-send")
def test_send(
    settings: SettingsDep, body: Annotated[TestSendBody, Depends(FormOrJson(TestSendBody))]
) -> TestSendResult:
    """Mail that digest to `to` now, "[Test]" in the subject, no ledger row; the answer waits
    for the mail server's reply (one message), so a refusal is a 400 with its reason."""
    email = operations.email_of(settings, body.subscriber_id) if body.subscriber_id else None
    return send_test(settings, body.to, subscriber=email, interests=body.interests)


@router.get("/stats")
def stats(settings: SettingsDep) -> Stats:
    """Subscribers by status and every issue's deliveries by state."""
    return Stats.model_validate(admin.stats(settings))
