"""Jinja2 for the pages: autoescaped always (metric names are user data and may hold <, &
and quotes), one base layout, and a few formatting filters."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import pydantic_core
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from skyline import __version__
from skyline.core.numbers import si
from skyline.core.timeutil import iso

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
UPLOT_VERSION = (STATIC / "vendor" / "uplot" / "VERSION").read_text().strip()


def _iso(ts: float | None) -> str:
    return "" if ts is None or not math.isfinite(ts) else iso(ts)


def _when(ts: float | None) -> Markup:
    """A time as the pages show it: ISO 8601 in UTC inside <time>, which static/format.js
    rewrites into the browser's zone when the person chose local time."""
    text = _iso(ts)
    if not text:
        return Markup("")
    return Markup('<time datetime="{0}">{0}</time>').format(text)


def _ago(ts: float | None) -> str:
    if ts is None:
        return ""
    s = max(0.0, time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def _num(x: float | None, digits: int = 6) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def duration(seconds: float | None) -> str:
    """'45s', '12m', '3h 05m', '2d 4h': how long an incident has been open."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _path(name: str) -> str:
    """A metric name as one URL path segment: `/`, `?`, `#`, `%` and spaces all escaped."""
    return quote(name, safe="")


def _query(params: dict[str, Any]) -> str:
    """A query string of the non-empty parameters."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _json_script(value: Any) -> Markup:
    """JSON for inside <script type="application/json">: with <, > and & as \\u escapes no
    `</script>` or `<!--` can appear in it, so it is safe unescaped."""
    # pydantic-core's encoder: 40k floats in a few ms where json.dumps takes 60
    text = pydantic_core.to_json(value).decode()
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
def _bursts(items: list[Any]) -> list[Any]:
    from skyline.services.webapp.oncall import bursts

    return bursts(items)


ENV.filters.update(bursts=_bursts, iso=_iso, when=_when, ago=_ago, num=_num, path=_path, query=_query,
                   json_script=_json_script, si=si, duration=duration)
ENV.globals.update(version=__version__, uplot_version=UPLOT_VERSION)


def csrf_token(request: Request) -> str:
    """The session's CSRF token when the login middleware set one (else ""): every form
    carries it as `csrf_token`, every state-changing fetch() as header X-CSRF-Token."""
    return str(getattr(request.state, "csrf_token", "") or "")


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("message", "")
    context.setdefault("error", "")
    page = ENV.get_template(template).render(
        request=request, path=request.url.path, csrf_token=csrf_token(request),
        user_timezone=bool(getattr(request.app.state, "user_timezone", False)),
        user=getattr(request.state, "user", None), **context)
    return HTMLResponse(page, status_code=status,
                        headers={"Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff"})
