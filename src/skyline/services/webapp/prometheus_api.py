"""A Prometheus-compatible read API under /prometheus, so that Grafana (a Prometheus data
source pointed at http://host:1500/prometheus), promtool and vmalert read Skyline's series.

Served series:
- every series of the hot store: a labelled name `name{k="v"}` is `__name__="name"` with its
  labels; a dotted Graphite name keeps its dots (`{__name__="a.b.c"}`);
- `skyline_anomaly_score{metric="<name>"}`: the analyzer's anomaly score series of a metric
  (keys.scores), where one exists;
- `skyline_anomaly{metric, source, status}`: one sample per anomaly event stored in SQL, at
  the event's timestamp, whose value is the event's score.

Queries are the selector subset of promql.py, evaluated as Prometheus does: an instant vector
takes each series' newest sample within LOOKBACK seconds before the evaluation time. Errors
answer in Prometheus' shape, `{"status": "error", "errorType": ..., "error": ...}`.
docs/grafana.md describes it.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from skyline import __version__
from skyline.core.errors import NotFound, SkylineError, StoreUnavailable
from skyline.core.types import FloatArray
from skyline.ingest.names import split_labelled
from skyline.runtime.context import Context
from skyline.services.webapp import data
from skyline.services.webapp.promql import Selector, Unsupported, parse, parse_duration
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.store.scores import has_scores, read_scores
from skyline.store.sql.queries import MAX_LIMIT, AnomalyQuery, query_anomalies

PREFIX = "/prometheus/api/v1"
SCORE = "skyline_anomaly_score"
EVENT = "skyline_anomaly"
LOOKBACK = 300.0  # Prometheus' default lookback delta
MAX_SERIES = 10_000  # series one query may select
MAX_POINTS = 11_000  # points per series of a range query, as Prometheus
MAX_EVENTS = 10_000  # anomaly events one query reads
CATALOGUE_SECONDS = 10.0  # how long the list of metric names is reused


class ApiError(Exception):
    def __init__(self, kind: str, status: int, message: str):
        self.kind, self.status, self.message = kind, status, message
        super().__init__(message)


def _bad(message: str) -> ApiError:
    return ApiError("bad_data", 400, message)


@dataclass
class Found:
    labels: dict[str, str]
    timestamps: FloatArray
    values: FloatArray


class Catalogue:
    """The hot store's metric names, sorted, with their labels, reused for a few seconds (the
    index holds at most MAX_METRICS names, so this is bounded as the index is)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._lock = threading.Lock()
        self._at = -math.inf
        self._names: list[str] = []
        self._labels: dict[str, dict[str, str]] = {}
        self._scored: bool = False

    def _refresh(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._at < CATALOGUE_SECONDS:
                return
            names = self.ctx.store.names()
            self._names, self._labels, self._at = names, {}, now
            sample = names[:: max(1, len(names) // 100)][:100]
            self._scored = any(has_scores(self.ctx.client, sample)) if sample else False

    def names(self) -> list[str]:
        self._refresh()
        return self._names

    def scored(self) -> bool:
        self._refresh()
        return self._scored

    def labels(self, name: str) -> dict[str, str]:
        got = self._labels.get(name)
        if got is None:
            base, labels = split_labelled(name)
            got = {"__name__": base, **(labels or {})}
            self._labels[name] = got
        return got

    def select(self, sel: Selector) -> list[str]:
        """Hot-store names whose labels the selector matches."""
        names = self.names()
        base = sel.name()
        if base is not None:
            lo = bisect.bisect_left(names, base)
            hi = bisect.bisect_left(names, base + "\uffff", lo)
            pool: Iterable[str] = (n for n in names[lo:hi] if n == base or
                                   n.startswith(base + "{"))
        else:
            pool = names
        out = []
        for n in pool:
            if sel.matches(self.labels(n)):
                out.append(n)
                if len(out) > MAX_SERIES:
                    raise _too_many()
        return out


def _too_many() -> ApiError:
    return ApiError("execution", 422, f"the query selects more than {MAX_SERIES} series; "
                    "narrow it with more label matchers")


def _is(sel: Selector, name: str) -> bool:
    """Whether the selector can select series named `name`."""
    return all(m.matches(name) for m in sel.matchers if m.label == "__name__")


class Source:
    """Reads the series a selector names, from the hot store, the scores and SQL."""

    def __init__(self, ctx: Context, catalogue: Catalogue):
        self.ctx = ctx
        self.catalogue = catalogue

    def read(self, sel: Selector, since: float, until: float) -> list[Found]:
        out: list[Found] = []
        names = self.catalogue.select(sel)
        for s in self.ctx.store.read(names, since=since, until=until):
            if s.timestamps.size:
                out.append(Found(self.catalogue.labels(s.name), s.timestamps, s.values))
        if _is(sel, SCORE):
            out += self._scores(sel, since, until, len(out))
        if _is(sel, EVENT):
            out += self._events(sel, since, until)
        if len(out) > MAX_SERIES:
            raise _too_many()
        return out

    def score_metrics(self, sel: Selector) -> list[str]:
        metric = sel.label_value("metric")
        if metric is not None:
            candidates = [metric]
        else:
            candidates = [n for n in self.catalogue.names()
                          if sel.matches({"__name__": SCORE, "metric": n})]
        if len(candidates) > MAX_SERIES:
            raise _too_many()
        candidates = [m for m in candidates if sel.matches({"__name__": SCORE, "metric": m})]
        return [m for m, ok in zip(candidates, has_scores(self.ctx.client, candidates),
                                   strict=True) if ok]

    def _scores(self, sel: Selector, since: float, until: float, have: int) -> list[Found]:
        metrics = self.score_metrics(sel)
        if have + len(metrics) > MAX_SERIES:
            raise _too_many()
        return [Found({"__name__": SCORE, "metric": s.name}, s.timestamps, s.values)
                for s in read_scores(self.ctx.client, metrics, since, until) if s.timestamps.size]

    def events(self, sel: Selector, since: float | None, until: float | None
               ) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
        q = AnomalyQuery(metric=sel.label_value("metric"), since=since, until=until,
                         source=sel.label_value("source"), status=sel.label_value("status"))
        groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        engine = data.engine(self.ctx)
        before = None
        read = 0
        while read < MAX_EVENTS:
            page = query_anomalies(engine, q, limit=min(MAX_LIMIT, MAX_EVENTS - read),
                                   before=before)
            for e in page.items:
                labels = {"__name__": EVENT, "metric": e.metric, "source": e.source,
                          "status": e.status}
                if sel.matches(labels):
                    groups.setdefault((e.metric, e.source, e.status), []).append(
                        (e.timestamp, e.score))
            read += len(page.items)
            if page.next is None:
                break
            before = page.next
        else:
            raise ApiError("execution", 422, f"the query selects more than {MAX_EVENTS} "
                           "anomaly events; narrow it (metric=, a shorter range)")
        return groups

    def _events(self, sel: Selector, since: float, until: float) -> list[Found]:
        # SQL's since is inclusive, the hot store's exclusive: match the hot store
        out = []
        for (metric, source, status), pts in self.events(sel, since, until).items():
            pts = sorted(p for p in pts if p[0] > since)
            if pts:
                arr = np.array(pts, dtype=np.float64)
                out.append(Found({"__name__": EVENT, "metric": metric, "source": source,
                                  "status": status}, arr[:, 0].copy(), arr[:, 1].copy()))
        return out


# evaluation ------------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def at_times(found: Found, times: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The series sampled at each evaluation time: its newest point within LOOKBACK before
    it (vectorised); times without one are left out."""
    t, v = found.timestamps, found.values
    idx = np.searchsorted(t, times, side="right") - 1
    ok = idx >= 0
    safe = np.where(ok, idx, 0)
    ok &= (times - t[safe]) < LOOKBACK
    return times[ok], v[safe][ok]


def instant(source: Source, sel: Selector, at: float) -> dict[str, Any]:
    if sel.range is not None:
        result = []
        for f in source.read(sel, at - sel.range, at):
            result.append({"metric": f.labels, "values": [
                [float(ts), _fmt(float(x))] for ts, x in zip(f.timestamps.tolist(),
                                                             f.values.tolist(), strict=True)]})
        return {"resultType": "matrix", "result": result}
    times = np.array([at], dtype=np.float64)
    vector: list[dict[str, Any]] = []
    for f in source.read(sel, at - LOOKBACK, at):
        ts, vs = at_times(f, times)
        if vs.size and bool(sel.compare(vs)[0]):
            labels = f.labels if sel.comparison is None else _without_name(f.labels)
            vector.append({"metric": labels, "value": [at, _fmt(float(vs[0]))]})
    return {"resultType": "vector", "result": vector}


def _without_name(labels: dict[str, str]) -> dict[str, str]:
    # a comparison drops the metric name, as in Prometheus
    return {k: v for k, v in labels.items() if k != "__name__"}


def ranged(source: Source, sel: Selector, start: float, end: float, step: float
           ) -> dict[str, Any]:
    if sel.range is not None:
        raise _bad('invalid expression type "range vector" for range query, must be Scalar '
                   "or instant Vector")
    if end < start:
        raise _bad("end timestamp must not be before start time")
    if step <= 0:
        raise _bad("zero or negative query resolution step widths are not accepted. Try a "
                   "positive integer")
    if (end - start) / step >= MAX_POINTS:
        raise _bad(f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. "
                   "Try decreasing the query resolution (?step=XX)")
    times = start + step * np.arange(int(math.floor((end - start) / step)) + 1,
                                     dtype=np.float64)
    result = []
    for f in source.read(sel, start - LOOKBACK, end):
        ts, vs = at_times(f, times)
        keep = sel.compare(vs)
        ts, vs = ts[keep], vs[keep]
        if ts.size:
            labels = f.labels if sel.comparison is None else _without_name(f.labels)
            result.append({"metric": labels, "values": [
                [x, _fmt(y)] for x, y in zip(ts.tolist(), vs.tolist(), strict=True)]})
    return {"resultType": "matrix", "result": result}


# parameters ------------------------------------------------------------------------------------
def parse_time(text: str | None, default: float) -> float:
    """Prometheus' times: Unix seconds (fractions allowed) or RFC 3339."""
    if text is None or text == "":
        return default
    try:
        x = float(text)
    except ValueError:
        try:
            x = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise _bad(f"cannot parse {text!r} to a valid timestamp") from None
    if not math.isfinite(x):
        raise _bad(f"cannot parse {text!r} to a valid timestamp")
    return x


class Params:
    """The query string and, for POST, the form body, as Prometheus reads them."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def get(self, key: str) -> str | None:
        for k, v in self.items:
            if k == key:
                return v
        return None

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key]


async def _params(request: Request) -> Params:
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        form = await request.form()
        items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    return Params(items)


def _selectors(params: Params) -> list[Selector] | None:
    raw = params.all("match[]")
    if not raw:
        return None
    out = []
    for m in raw:
        try:
            sel = parse(m)
        except Unsupported as e:
            raise _bad(f"invalid parameter 'match[]': {e}") from None
        if sel.range is not None or sel.comparison is not None:
            raise _bad("invalid parameter 'match[]': a series selector is needed")
        out.append(sel)
    return out


def _query(params: Params) -> Selector:
    q = params.get("query")
    if q is None or not q.strip():
        raise _bad("invalid parameter 'query': no query given")
    try:
        return parse(q)
    except Unsupported as e:
        raise _bad(f"invalid parameter 'query': {e}") from None


# the router ------------------------------------------------------------------------------------
def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["prometheus"], include_in_schema=False)
    catalogue = Catalogue(ctx)
    source = Source(ctx, catalogue)
    tel = ctx.telemetry("webapp")

    async def answer(request: Request, work: Callable[[Params], Any]) -> JSONResponse:
        tel.incr("prometheus_requests")
        try:
            params = await _params(request)
            result = await asyncio.to_thread(work, params)
        except ApiError as e:
            tel.incr(f"prometheus_errors_{e.kind}")
            return JSONResponse({"status": "error", "errorType": e.kind, "error": e.message},
                                status_code=e.status)
        except (StoreUnavailable, *CONNECTION_ERRORS) as e:
            tel.incr("prometheus_errors_unavailable")
            return JSONResponse({"status": "error", "errorType": "unavailable",
                                 "error": str(e) or "a store is unreachable"}, status_code=503)
        except (NotFound, SkylineError) as e:
            return JSONResponse({"status": "error", "errorType": "bad_data", "error": str(e)},
                                status_code=400)
        return JSONResponse({"status": "success", "data": result})

    def query(p: Params) -> Any:
        sel = _query(p)
        return instant(source, sel, parse_time(p.get("time"), time.time()))

    def query_range(p: Params) -> Any:
        sel = _query(p)
        for k in ("start", "end", "step"):
            if p.get(k) in (None, ""):
                raise _bad(f"invalid parameter '{k}': missing")
        start = parse_time(p.get("start"), 0)
        end = parse_time(p.get("end"), 0)
        try:
            step = parse_duration(p.get("step") or "")
        except Unsupported as e:
            raise _bad(f"invalid parameter 'step': {e}") from None
        return ranged(source, sel, start, end, step)

    def window(p: Params) -> tuple[float | None, float | None]:
        """start and end of the label and series endpoints: all time unless given."""
        start, end = p.get("start"), p.get("end")
        return (None if start in (None, "") else parse_time(start, 0),
                None if end in (None, "") else parse_time(end, 0))

    def series_labels(p: Params) -> list[dict[str, str]]:
        sels = _selectors(p)
        if sels is None:
            raise _bad("no match[] parameter provided")
        start, end = window(p)
        seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for sel in sels:
            for name in catalogue.select(sel):
                labels = catalogue.labels(name)
                seen.setdefault(tuple(sorted(labels.items())), labels)
            if _is(sel, SCORE):
                for m in source.score_metrics(sel):
                    labels = {"__name__": SCORE, "metric": m}
                    seen.setdefault(tuple(sorted(labels.items())), labels)
            if _is(sel, EVENT):
                for metric, src, status in source.events(sel, start, end):
                    labels = {"__name__": EVENT, "metric": metric, "source": src,
                              "status": status}
                    seen.setdefault(tuple(sorted(labels.items())), labels)
            if len(seen) > MAX_SERIES:
                raise _too_many()
        return list(seen.values())

    def all_labels(p: Params) -> list[dict[str, str]]:
        if p.all("match[]"):
            return series_labels(p)
        out = [catalogue.labels(n) for n in catalogue.names()]
        if catalogue.scored():
            out.append({"__name__": SCORE, "metric": ""})
        start, end = window(p)
        q = AnomalyQuery(since=start, until=end)
        if query_anomalies(data.engine(ctx), q, limit=1).items:
            out.append({"__name__": EVENT, "metric": "", "source": "", "status": ""})
        return out

    def labels(p: Params) -> Any:
        return sorted({k for labels in all_labels(p) for k in labels})

    def label_values(name: str) -> Callable[[Params], Any]:
        def work(p: Params) -> Any:
            values = {labels.get(name, "") for labels in all_labels(p)}
            values.discard("")
            return sorted(values)
        return work

    @r.api_route("/query", methods=["GET", "POST"])
    async def query_route(request: Request) -> JSONResponse:
        return await answer(request, query)

    @r.api_route("/query_range", methods=["GET", "POST"])
    async def query_range_route(request: Request) -> JSONResponse:
        return await answer(request, query_range)

    @r.api_route("/series", methods=["GET", "POST"])
    async def series_route(request: Request) -> JSONResponse:
        return await answer(request, series_labels)

    @r.api_route("/labels", methods=["GET", "POST"])
    async def labels_route(request: Request) -> JSONResponse:
        return await answer(request, labels)

    @r.get("/label/{name}/values")
    async def label_values_route(request: Request, name: str) -> JSONResponse:
        return await answer(request, label_values(name))

    @r.get("/status/buildinfo")
    async def buildinfo(request: Request) -> JSONResponse:
        return await answer(request, lambda p: {
            "version": __version__, "revision": "", "branch": "", "buildUser": "",
            "buildDate": "", "goVersion": "", "application": "skyline"})

    # what Grafana also asks for: nothing of these exists in Skyline, and saying so is true
    @r.get("/metadata")
    async def metadata(request: Request) -> JSONResponse:
        return await answer(request, lambda p: {})

    @r.api_route("/query_exemplars", methods=["GET", "POST"])
    async def exemplars(request: Request) -> JSONResponse:
        return await answer(request, lambda p: [])

    @r.get("/rules")
    async def rules(request: Request) -> JSONResponse:
        return await answer(request, lambda p: {"groups": []})

    @r.get("/alerts")
    async def alerts(request: Request) -> JSONResponse:
        return await answer(request, lambda p: {"alerts": []})

    @r.api_route("/{rest:path}", methods=["GET", "POST"])
    async def other(request: Request, rest: str) -> JSONResponse:
        return JSONResponse({"status": "error", "errorType": "not_found",
                             "error": f"/api/v1/{rest} is not served by Skyline's Prometheus "
                             "API (docs/grafana.md)"}, status_code=404)

    return r

