"""The admin pages under /admin: server-rendered, behind a login (see `session`).

Each module is a group of pages; they call the plain functions the CLI and the admin API call
(`newsletter.admin`, `dashboard`, `stats`, …) and format the result.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse

from newsletter.web.admin_pages import dashboard, imports, issues, login, preview, subscribers
from newsletter.web.admin_pages.session import LoginRequired

router = APIRouter()
for _module in (login, dashboard, subscribers, issues, preview, imports):
    router.include_router(_module.router)


def install(app: FastAPI) -> None:
    """Mount the admin pages on `app`: their routes, and the login redirect."""
    app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def to_login(_: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(exc.location(), status_code=303)
