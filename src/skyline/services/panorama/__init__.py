"""Panorama: the one writer of anomaly events into SQL, and the queries over them."""

from fastapi import APIRouter

from skyline.runtime.context import Context
from skyline.services.panorama.api import router
from skyline.services.panorama.service import run


def routers(ctx: Context) -> list[APIRouter]:
    return [router(ctx)]


__all__ = ["routers", "run"]
