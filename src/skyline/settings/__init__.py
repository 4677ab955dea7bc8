"""The one typed Settings object: defaults < TOML file < environment."""

from skyline.settings.loader import load_settings, settings_problems
from skyline.settings.model import Settings

__all__ = ["Settings", "load_settings", "settings_problems"]
