"""/api/admin/subscribers: list and search (keyset pages), one reader's history, add, import a
CSV, change, unsubscribe, erase, export; lifting a suppression."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from newsletter import admin, history, operations
from newsletter.importing import ImportReport, import_subscribers
from newsletter.models import MAX_ROW_ID, Frequency, SubscriberPublic, SubscriberStatus
from newsletter.operations import SubscriberChange, SubscriberPage
from newsletter.web.admin_api.models import NewSubscriber, Removal, Unsuppress
from newsletter.web.auth import admin_caller
from newsletter.web.deps import FormOrJson, FormOrJsonRoute, SettingsDep

router = APIRouter(
    prefix="/api/admin",
    tags=["admin: subscribers"],
    dependencies=[Depends(admin_caller)],
    route_class=FormOrJsonRoute,
)
SubscriberId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
IMPORT_OPTIONS = ("confirmed", "update", "dry_run")
FLAG = TypeAdapter(bool)  # "true", "1", "on", "yes" … as a query parameter reads them
MAX_CSV = 32 * 2**20  # as the body cap of the import path (`middleware.LARGE_BODIES`)
CSV_FILE = {
    "type": "object",
    "properties": {"file": {"type": "string", "format": "binary"}},
    "required": ["file"],
}
CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}, "multipart/form-data": {"schema": CSV_FILE}},
    }
}


@router.get("/subscribers")
def list_subscribers(
    settings: SettingsDep,
    status: SubscriberStatus | None = None,
    frequency: Frequency | None = None,
    search: Annotated[str | None, Query(max_length=320, description="Part of the address, any case.")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="The previous page's next_after.")] = 0,
    limit: Annotated[int, Query(ge=1, le=operations.MAX_PAGE)] = 100,
) -> SubscriberPage:
    """Subscribers in id order, `limit` at a time; follow `next_after` for the next page."""
    return operations.subscriber_page(
        settings, status=status, frequency=frequency, search=search, after=after, limit=limit
    )


@router.post("/subscribers", status_code=201)
def add_subscriber(
    settings: SettingsDep,
    body: Annotated[NewSubscriber, Depends(FormOrJson(NewSubscriber))],
    response: Response,
) -> SubscriberPublic:
    """Add one address (a confirmation email goes out unless `confirmed`): 201 for a new one,
    200 for one already known, whose preferences stay as they are (PATCH changes them). An
    erased address is refused (400) until its suppression is lifted."""
    if admin.is_known(settings, body.email):
        response.status_code = 200
    return admin.add_subscriber(
        settings,
        body.email,
        body.interests,
        body.frequency.value,
        body.max_papers,
        body.confirmed,
        operations.API_CLIENT,
        resubscribe=body.resubscribe,
    )


@router.post("/subscribers/import", openapi_extra=CSV_BODY)
async def import_csv(
    request: Request,
    settings: SettingsDep,
    confirmed: bool = False,
    update: bool = False,
    dry_run: bool = False,
    filename: Annotated[str, Query(max_length=200)] = "upload.csv",
) -> ImportReport:
    """Import a CSV sent as the body (`Content-Type: text/csv`) or as the `file` of a form
    upload, as `newsletter subscribers import` does: every bad row is reported with its line
    and reason, the rest imports. The options come as query parameters or, with a form, as its
    fields too; any other parameter or field is a 422, never an import without what it asked."""
    _refuse_unknown(request.query_params.keys(), "query parameter", "filename")
    options = {"confirmed": confirmed, "update": update, "dry_run": dry_run}
    data, filename, given = await _csv_of(request, filename)
    options |= given  # a form's own fields win over the query
    return await run_in_threadpool(import_subscribers, settings, data, filename, **options)


def _refuse_unknown(names: Any, what: str, other: str) -> None:
    unknown = sorted(set(names) - {*IMPORT_OPTIONS, other})
    if unknown:  # a misspelt dry-run imported for real, confirmation emails and all
        raise HTTPException(
            422, f"Unknown {what} {', '.join(unknown)[:200]}: the options are {', '.join(IMPORT_OPTIONS)}."
        )


async def _csv_of(request: Request, filename: str) -> tuple[bytes, str, dict[str, bool]]:
    """The uploaded file's bytes and name, and the options a form gives: the body itself, or a
    form's `file` field and its `confirmed`, `update`, `dry_run` fields."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await request.body(), filename, {}
    async with request.form(max_files=1, max_fields=5, max_part_size=MAX_CSV) as form:
        _refuse_unknown(form.keys(), "form field", "file")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "Send the CSV as the form's file field, or as a text/csv body.")
        try:
            given = {name: FLAG.validate_python(form[name]) for name in IMPORT_OPTIONS if name in form}
        except ValidationError as exc:
            raise HTTPException(422, "confirmed, update and dry_run are true or false.") from exc
        return await upload.read(), upload.filename or filename, given


@router.get("/subscribers/{subscriber_id}")
def subscriber_history(settings: SettingsDep, subscriber_id: SubscriberId) -> history.SubscriberHistory:
    """One reader: preferences, consent log, digests, journey emails, failures, bounces, votes."""
    return history.subscriber_history(settings, operations.email_of(settings, subscriber_id))


@router.patch("/subscribers/{subscriber_id}")
def change_subscriber(
    settings: SettingsDep,
    subscriber_id: SubscriberId,
    body: Annotated[SubscriberChange, Depends(FormOrJson(SubscriberChange))],
) -> SubscriberPublic:
    """Change a pending or confirmed reader's interests, frequency or digest size."""
    return operations.change_subscriber(settings, operations.email_of(settings, subscriber_id), body)


@router.post("/subscribers/{subscriber_id}/unsubscribe")
def unsubscribe(settings: SettingsDep, subscriber_id: SubscriberId) -> Removal:
    removal = admin.remove_subscriber(
        settings, operations.email_of(settings, subscriber_id), erase=False, client=operations.API_CLIENT
    )
    return Removal(email=removal.email, status=removal.status)


@router.delete("/subscribers/{subscriber_id}")
def erase(settings: SettingsDep, subscriber_id: SubscriberId) -> Removal:
    """Erase every record of the reader; a hash of the address stays so no import brings it back."""
    removal = admin.remove_subscriber(settings, operations.email_of(settings, subscriber_id), erase=True)
    return Removal(email=removal.email, status=removal.status)


@router.get("/subscribers/{subscriber_id}/export")
def export(settings: SettingsDep, subscriber_id: SubscriberId) -> dict[str, Any]:
    """Everything held about the reader, as `newsletter subscribers export EMAIL` writes it."""
    return admin.export(settings, operations.email_of(settings, subscriber_id))


@router.post("/suppressions/lift")
def unsuppress(
    settings: SettingsDep, body: Annotated[Unsuppress, Depends(FormOrJson(Unsuppress))]
) -> Unsuppress:
    """Let an erased address be added again (the person asked you to)."""
    return Unsuppress(email=admin.unsuppress(settings, body.email))
