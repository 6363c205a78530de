"""The web app: `uvicorn --factory newsletter.web:create_app`."""

from newsletter.web.app import create_app

__all__ = ["create_app"]
