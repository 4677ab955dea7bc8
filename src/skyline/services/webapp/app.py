"""The FastAPI application: status page, /api/v1/health, /metrics, one error handler, and
the routers other components contribute."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyline import __version__
from skyline.core.errors import (
    InvalidInput,
    NotFound,
    PatternError,
    SkylineError,
    StoreUnavailable,
)
from skyline.runtime.context import Context
from skyline.services.webapp import (
    alerts_api,
    api,
    apidocs,
    crucible_page,
    ionosphere_api,
    ionosphere_pages,
    login,
    luminosity_api,
    luminosity_pages,
    pages,
    prometheus_api,
)
from skyline.services.webapp.auth import (
    SESSION_COOKIE,
    Auth,
    AuthMiddleware,
    is_flux,
    is_open,
)
from skyline.services.webapp.bodylimit import BodyLimit
from skyline.services.webapp.health import health, public
from skyline.services.webapp.models import ErrorOut
from skyline.services.webapp.templating import STATIC
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.telemetry.counters import collect, prometheus_text

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FAVICON = (STATIC / "favicon.svg").read_bytes()


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
        if isinstance(exc, InvalidInput | PatternError):
            return _error(request, 400, str(exc))
        if isinstance(exc, StoreUnavailable):
            return _error(request, 503, str(exc))
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return _error(request, 500, str(exc))

    async def store_down(request: Request, exc: Exception) -> Response:
        return _error(request, 503, "the hot store (Redis) is unreachable; retry shortly")

    # each class by name: a handler for Exception alone runs in Starlette's outermost layer,
    # which re-raises after answering, so every request during an outage logged a traceback
    for cls in CONNECTION_ERRORS:
        app.add_exception_handler(cls, store_down)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, CONNECTION_ERRORS):
            return await store_down(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(request, 500, "internal error; the server log has the details")


# Pages load only their own scripts and styles (charts are vendored, the API docs are
# rendered here); no other site may frame them (clickjacking of the silence and settings
# forms). Every answer carries it: nothing a page needs comes from another origin.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def _protect(response: Response) -> None:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Content-Security-Policy", _CSP)


def _body_limits(ctx: Context) -> Callable[[str], int | None]:
    general = ctx.settings.webapp.max_body_bytes
    # twice the upload limit: the page refuses a declared body over its limit itself, with
    # its own message; this bounds chunked uploads, which declare nothing
    crucible = 2 * crucible_page.MAX_UPLOAD

    def limit_for(path: str) -> int | None:
        if is_flux(path):
            return None  # flux reads within its own limits and counts its refusals
        if path == "/crucible":
            return max(general, crucible)
        return general

    return limit_for


def core_router(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.get(f"{API_PREFIX}/health", tags=["health"])
    def api_health() -> JSONResponse:
        result = public(health(ctx))
        result["version"] = __version__
        return JSONResponse(result, status_code=200 if result["status"] == "ok" else 503)

    @router.get("/metrics", response_class=PlainTextResponse, tags=["health"])
    def metrics() -> Response:
        return Response(prometheus_text(collect(ctx.client), __version__),
                        media_type=PROMETHEUS_CONTENT_TYPE)

    @router.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        # browsers ask for it on their own; the same icon the pages link
        return Response(FAVICON, media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    return router


def create_app(ctx: Context, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The app, with the core routes and every router other components contribute."""
    app = FastAPI(
        title="Skyline",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # apidocs renders the reference itself, with nothing from a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    # before the counting middleware, so that it stays outermost and counts refusals too
    auth = Auth(ctx, _error, _wants_json)
    app.add_middleware(AuthMiddleware, auth=auth)
    tel = ctx.telemetry("webapp")
    # outside the login check, so that no form it reads for a CSRF token passes the limit
    app.add_middleware(BodyLimit, limit_for=_body_limits(ctx), error=_error, telemetry=tel)
    app.include_router(login.router(auth))
    app.state.auth = auth
    app.state.user_timezone = ctx.settings.WEBAPP_USER_TIMEZONE  # templating.render

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
        _protect(response)
        return response

    app.include_router(core_router(ctx))
    app.include_router(apidocs.router(app, API_PREFIX))
    # the pages and the read API: here, so that `skyline serve webapp` alone serves them
    app.mount("/static", CachedStatic(directory=STATIC), name="static")
    for own in (api.router(ctx), alerts_api.router(ctx), pages.router(ctx),
                crucible_page.router(ctx), prometheus_api.router(ctx),
                luminosity_api.router(ctx), luminosity_pages.router(ctx),
                ionosphere_api.router(ctx), ionosphere_pages.router(ctx)):
        app.include_router(own)
    for router in routers:
        app.include_router(router)
    app.state.ctx = ctx
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class CachedStatic(StaticFiles):
    """Static files cached for a year: pages link them with ?v=<version>, so a new release
    is fetched anew."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, saying what the error handler really answers: a request that fails
    validation gets 400 {"error": ...}, never FastAPI's 422."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorOut"] = ErrorOut.model_json_schema()
    error_ref = {"description": "a parameter is invalid",
                 "content": {"application/json": {"schema": {
                     "$ref": "#/components/schemas/ErrorOut"}}}}
    def error(description: str) -> dict[str, Any]:
        return {**error_ref, "description": description}

    # every /api/v1 route but health sits behind the auth middleware, and the handler turns
    # an unreachable store into 503 and an unknown id into 404 wherever a path names one
    schema["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "an API token: `skyline user token NAME`"},
        "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                    "description": "the login page's session (state-changing requests "
                    "also need its CSRF token in header X-CSRF-Token)"}}
    for path, operations in schema.get("paths", {}).items():
        for op in operations.values():
            responses = op.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", error_ref)
            if not path.startswith(f"{API_PREFIX}/") or is_open(path):
                continue
            op["security"] = [{"bearer": []}, {"session": []}]
            responses.setdefault("401", error("no valid session or API token"))
            responses.setdefault("503", error("Redis or the SQL database is unreachable"))
            if "{" in path:
                responses.setdefault("404", error("no such item"))
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
