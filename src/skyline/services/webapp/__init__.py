"""The web app: one FastAPI app on WEBAPP_PORT; other components add routers to it."""

from skyline.services.webapp.app import create_app
from skyline.services.webapp.service import run

__all__ = ["create_app", "run"]
