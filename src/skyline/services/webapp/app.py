"""The FastAPI application: status page, /api/v1/health, /metrics, one error handler, and
the routers other components contribute."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyline import __version__
from skyline.core.errors import InvalidInput, NotFound, SkylineError, StoreUnavailable
from skyline.runtime.context import Context
from skyline.services.webapp.health import health
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.telemetry.counters import collect, prometheus_text

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _wants_json(request: Request) -> bool:
    path = request.url.path
    # flux's Influx and OTLP routes sit where their clients post, outside /flux
    if path.startswith((API_PREFIX, "/flux", "/metrics", "/write", "/api/v2/", "/v1/metrics")):
        return True
    return "text/html" not in request.headers.get("accept", "")


def _error(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    body = (f"<!doctype html><title>Skyline: error {status}</title>"
            f"<h1>Error {status}</h1><p>{html.escape(message)}</p><p><a href='/'>Skyline</a></p>")
    return HTMLResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """One place where errors become responses; never a traceback to a client."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body", "path"))
            parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return _error(request, 400, "; ".join(parts) or "invalid request")

    @app.exception_handler(SkylineError)
    async def skyline_error(request: Request, exc: SkylineError) -> Response:
        if isinstance(exc, NotFound):
            return _error(request, 404, str(exc))
        if isinstance(exc, InvalidInput):
            return _error(request, 400, str(exc))
        if isinstance(exc, StoreUnavailable):
            return _error(request, 503, str(exc))
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(request, 500, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, CONNECTION_ERRORS):
            return _error(request, 503, "the hot store (Redis) is unreachable; retry shortly")
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(request, 500, "internal error; the server log has the details")


def core_router(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.get(f"{API_PREFIX}/health", tags=["health"])
    def api_health() -> JSONResponse:
        result = health(ctx)
        result["version"] = __version__
        return JSONResponse(result, status_code=200 if result["status"] == "ok" else 503)

    @router.get("/metrics", response_class=PlainTextResponse, tags=["health"])
    def metrics() -> Response:
        return Response(prometheus_text(collect(ctx.client)), media_type=PROMETHEUS_CONTENT_TYPE)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def status_page() -> HTMLResponse:
        h = health(ctx)
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{beat.get('age_seconds')} s ago</td>"
            f"<td>pid {beat.get('pid')}</td></tr>"
            for name, beat in h["components"].items()
        )
        redis_info = h["redis"]
        db = h["database"]
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Skyline</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}
td,th{{padding:.2rem .8rem;text-align:left}} .ok{{color:#080}} .bad{{color:#b00}}</style>
</head><body><h1>Skyline {html.escape(__version__)}</h1>
<p>Status: <b class="{'ok' if h['status'] == 'ok' else 'bad'}">{h['status']}</b></p>
<h2>Stores</h2><table>
<tr><th>Redis</th><td class="{'ok' if redis_info['ok'] else 'bad'}">{'up' if redis_info['ok'] else 'down'}</td>
<td>{html.escape(str(redis_info.get('url')))}</td><td>{redis_info.get('metrics', '')} metrics</td></tr>
<tr><th>SQL</th><td class="{'ok' if db['ok'] else 'bad'}">{'up' if db['ok'] else 'down'}</td>
<td>{html.escape(str(db.get('url', db.get('error', ''))))}</td><td></td></tr></table>
<h2>Components</h2><table><tr><th>component.instance</th><th>heartbeat</th><th></th></tr>{rows}</table>
<p><a href="{API_PREFIX}/health">{API_PREFIX}/health</a> · <a href="/metrics">/metrics</a>
· <a href="{API_PREFIX}/openapi.json">OpenAPI</a></p></body></html>"""
        return HTMLResponse(page)

    return router


def create_app(ctx: Context, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The app, with the core routes and every router other components contribute."""
    app = FastAPI(
        title="Skyline",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    tel = ctx.telemetry("webapp")

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Response:
        tel.incr("requests")
        try:
            response: Response = await call_next(request)
        except Exception:
            # the outermost handler turns it into a 500 after this middleware
            tel.incr("responses_5xx")
            raise
        if response.status_code >= 500:
            tel.incr("responses_5xx")
        elif response.status_code >= 400:
            tel.incr("responses_4xx")
        return response

    app.include_router(core_router(ctx))
    for router in routers:
        app.include_router(router)
    app.state.ctx = ctx
    return app
