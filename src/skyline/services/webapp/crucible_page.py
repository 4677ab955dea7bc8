"""The crucible page: upload a CSV/JSON series or name a stored metric, and see every
algorithm's verdict and explanation on a chart, through the same code as `skyline crucible`
(skyline.analysis.crucible)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.datastructures import UploadFile as StarletteUpload

from skyline.analysis.crucible import crucible_pipeline, examine, replay_series
from skyline.analysis.series_text import check_series, parse_series
from skyline.analysis.stages import StageContext
from skyline.core.errors import InvalidInput, NotFound
from skyline.core.types import FloatArray
from skyline.runtime.context import Context
from skyline.services.webapp import data
from skyline.services.webapp.models import finite_list
from skyline.services.webapp.templating import render

MAX_UPLOAD = 10 * 1024 * 1024  # bytes: a year of minutely points as CSV is about 9 MiB
MAX_REPLAY_POINTS = 20_000  # replay judges one window per point: keep a page's wait short
MAX_MARKS = 2000  # anomalous points marked on the chart


class UploadTooLarge(InvalidInput):
    pass


async def _read_upload(upload: StarletteUpload) -> tuple[str, str, str | None]:
    """(text, source name, kind) of an uploaded file; InvalidInput for one too large or not
    text."""
    raw = await upload.read(MAX_UPLOAD + 1)
    name = upload.filename or "upload"
    if len(raw) > MAX_UPLOAD:
        raise UploadTooLarge(f"{name}: larger than {MAX_UPLOAD // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name}: not CSV or JSON (not UTF-8 text)") from None
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return text, name, {"json": "json", "csv": "csv"}.get(suffix)


def router(ctx: Context) -> APIRouter:
    r = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
    settings = ctx.settings

    def page(request: Request, status: int = 200, **kw: Any) -> HTMLResponse:
        kw.setdefault("metric", request.query_params.get("metric", ""))
        kw.setdefault("algorithms", "")
        kw.setdefault("replay", False)
        kw.setdefault("ex", None)
        return render(request, "crucible.html", status=status,
                      max_upload_mib=MAX_UPLOAD / (1024 * 1024),
                      max_replay_points=MAX_REPLAY_POINTS, **kw)

    @r.get("/crucible")
    def form(request: Request) -> HTMLResponse:
        return page(request)

    def analyse(source: str, name: str, t: FloatArray, v: FloatArray, now: float | None,
                algorithms: str, do_replay: bool, stored: bool = False) -> dict[str, Any]:
        expiration = float(settings.EXPIRATION_TIME)
        # a metric of the hot store: the stages read it as they do live (Mirage: its long
        # history); a file: the file is the history
        context = StageContext(settings=settings, client=ctx.client) if stored else None
        with crucible_pipeline(settings, algorithms or None, context=context) as pipeline:
            ex = examine(pipeline, name, t, v, now=now,
                         detector="algorithms" if algorithms else None,
                         history_from_series=not stored)
            rp = replay_series(pipeline, name, t, v, expiration=expiration) \
                if do_replay else None
        if rp is not None:
            idx = np.flatnonzero(rp.anomalous)[:MAX_MARKS]
            marks = [{"t": float(t[i]), "v": float(v[i]), "label": "anomalous"} for i in idx]
        elif ex.candidate:
            marks = [{"t": ex.timestamp, "v": ex.value,
                      "label": "vetoed" if ex.event == "vetoed" else "anomalous"}]
        else:
            marks = []
        chart = {"t": t.tolist(), "v": finite_list(v.tolist()), "marks": marks}
        return {"source": source, "ex": ex, "rp": rp, "chart": chart, "expiration": expiration,
                "first": float(t[0]), "last": float(t[-1])}

    @r.post("/crucible")
    async def run(request: Request) -> HTMLResponse:
        rejected = ctx.telemetry("webapp")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_UPLOAD + 64 * 1024:
            rejected.incr("crucible_rejected")
            return page(request, 413, error=f"the upload is larger than "
                        f"{MAX_UPLOAD // (1024 * 1024)} MiB")
        async with request.form(max_files=1, max_fields=10) as form:
            metric = str(form.get("metric") or "").strip()
            algorithms = str(form.get("algorithms") or "").strip()
            do_replay = bool(form.get("replay"))
            upload = form.get("file")
            kw: dict[str, Any] = {"metric": metric, "algorithms": algorithms,
                                  "replay": do_replay}
            has_file = isinstance(upload, StarletteUpload | UploadFile) and bool(upload.filename)
            try:
                if has_file == bool(metric):
                    raise InvalidInput("upload a file or name a stored metric (one of them)")
                min_points = settings.MIN_TOLERABLE_LENGTH
                if has_file:
                    assert isinstance(upload, StarletteUpload)
                    text, source, kind = await _read_upload(upload)
                    try:
                        t, v = await asyncio.to_thread(parse_series, text, source,
                                                       min_points=min_points, kind=kind)
                    except RecursionError:  # json.loads of [[[[...]]]]: a bad file, not a bug
                        raise InvalidInput(f"{source}: nested too deeply to be a series "
                                           "([[t, v], ...])") from None
                    name, now = source.rsplit(".", 1)[0], None
                else:
                    s = await asyncio.to_thread(data.read_series, ctx, metric, None, None)
                    check_series(s.timestamps, metric, min_points)
                    t, v, source, name, now = s.timestamps, s.values, metric, metric, time.time()
                if do_replay and len(t) > MAX_REPLAY_POINTS:
                    raise InvalidInput(f"{source}: {len(t)} points; replay takes at most "
                                       f"{MAX_REPLAY_POINTS} (use `skyline crucible --replay`)")
                kw.update(await asyncio.to_thread(analyse, source, name, t, v, now, algorithms,
                                                  do_replay, not has_file))
            except (InvalidInput, NotFound) as e:
                rejected.incr("crucible_rejected")
                status = (413 if isinstance(e, UploadTooLarge)
                          else 404 if isinstance(e, NotFound) else 400)
                return page(request, status, error=str(e), **kw)
        return page(request, **kw)

    return r
