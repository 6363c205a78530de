"""Pages around the digest: archive, view in browser, votes; and the bounce webhook."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
