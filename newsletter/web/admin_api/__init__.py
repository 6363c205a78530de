"""The admin JSON API under /api/admin/: everything the `newsletter` command does, for scripts.

Every route needs one of NEWSLETTER_ADMIN_TOKENS as a bearer token (`auth.admin_caller`, run
before anything else, so a caller without one learns nothing, not even whether an id exists).
Routes parse, call the same plain functions as the CLI, and return their pydantic models; the
core's mistakes become JSON errors here: `NotFound` 404, `OperatorError` 400, `InvalidInput` 422.
The OpenAPI document is at /api/admin/openapi.json for authenticated callers in every mode.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from newsletter.errors import NotFound, OperatorError
from newsletter.validation import InvalidInput
from newsletter.web.admin_api import issues, subscribers
from newsletter.web.auth import admin_caller
from newsletter.web.responses import error_response

schema_router = APIRouter(prefix="/api/admin", dependencies=[Depends(admin_caller)])


@schema_router.get("/openapi.json", include_in_schema=False)
def openapi_document(request: Request) -> dict[str, Any]:
    """The OpenAPI document of the whole app (production serves none publicly)."""
    return request.app.openapi()


def install(app: FastAPI) -> None:
    """Add the admin API's routes and the answers for the core's errors to `app`."""

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return error_response(request, 404, "Not found", str(exc))

    @app.exception_handler(OperatorError)
    async def refused(request: Request, exc: OperatorError) -> Response:
        return error_response(request, 400, "Cannot do that", str(exc))

    @app.exception_handler(InvalidInput)
    async def invalid(request: Request, exc: InvalidInput) -> Response:
        return error_response(request, 422, "Invalid request", str(exc))

    for router in (subscribers.router, issues.router, schema_router):
        app.include_router(router)
