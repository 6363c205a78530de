"""Import: upload a CSV, see what would happen row by row (a dry run), then import that file.

The file is read only after the session and the CSRF token have passed (no `File` parameter,
which FastAPI would read first), and the body cap is raised for this one path
(`middleware.LARGE_BODIES`). The import button names the checked file by its SHA-256, so
what is imported is exactly the file and options the operator saw in the dry run.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from newsletter.errors import OperatorError
from newsletter.importing import import_subscribers
from newsletter.web.admin_pages.session import PATH, Admin, AdminForm
from newsletter.web.admin_pages.views import page
from newsletter.web.deps import SettingsDep

router = APIRouter(prefix=PATH, include_in_schema=False)


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, admin: Admin) -> Response:
    return page(
        request, "import.html", admin, report=None, checked="", confirmed=False, update=False, error=None
    )


@router.post("/import")
async def import_file(request: Request, post: AdminForm, settings: SettingsDep) -> Response:
    admin = post.session
    form = await request.form()  # already parsed by the CSRF check
    upload, confirmed, update = form.get("file"), form.get("confirmed") == "yes", form.get("update") == "yes"
    options = {"confirmed": confirmed, "update": update}
    if not isinstance(upload, UploadFile) or not upload.filename:
        return page(
            request, "import.html", admin, 400, report=None, checked="", error="Choose a CSV file.", **options
        )
    data = await upload.read()
    digest = hashlib.sha256(f"{confirmed}:{update}:".encode() + data).hexdigest()
    checked = str(form.get("checked") or "")
    dry_run = form.get("action") != "import" or not hmac.compare_digest(checked.encode(), digest.encode())
    try:
        report = await run_in_threadpool(
            import_subscribers,
            settings,
            data,
            upload.filename,
            confirmed=confirmed,
            update=update,
            dry_run=dry_run,
        )
    except OperatorError as exc:
        return page(request, "import.html", admin, 400, report=None, checked="", error=str(exc), **options)
    error = None
    if form.get("action") == "import" and dry_run:
        error = "That is not the file (or the options) you checked. Here is its dry run; check it first."
    return page(
        request,
        "import.html",
        admin,
        report=report,
        checked=digest if dry_run else "",
        error=error,
        **options,
    )
