"""Roomba: keeps the hot store to FULL_DURATION plus ROOMBA_GRACE_TIME."""

from skyline.services.roomba.service import run

__all__ = ["run"]
