"""Vista's remote_write sender: every anomaly score the analyzer wrote and every anomaly event,
sent as series to a user's Prometheus-compatible store (VictoriaMetrics, Prometheus with its
remote-write receiver, Mimir...), as vmanomaly does, so that dashboards and alert rules there
see Skyline's verdicts beside the metrics.

- `skyline_anomaly_score{metric="<name>"}`: the score of each judged point, at the point's
  timestamp (the series the Prometheus-compatible API serves under the same name);
- `skyline_anomaly{metric=..., source=..., status=...}`: one sample per anomaly event, at the
  event's timestamp, valued at its score.

Every `remote_write_interval` seconds, what is new since the last send: the tail of each
metric's score series after the newest score already sent (one GETRANGE per metric through
the flat reader, read further back only for a metric whose tail does not reach that far), and the anomaly
stream after the last entry sent. What was sent is recorded in Redis (keys.VISTA_WRITTEN)
after the receiver accepted it, so a restart neither resends nor skips; nothing was sent
before: the last `remote_write_backfill` seconds.

A receiver that is down, slow, redirects or answers 5xx or 429: counted and logged once by
the shared remote client, retried with backoff, nothing recorded, so the next send carries
everything since the last accepted request (the outage is filled in). A 4xx
(samples the receiver refuses for good: too old, out of order) drops that request's samples
(counted as `remote_write_dropped_samples`): sending them again would be refused again. 401 and
403 are a configuration to fix: retried with backoff, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from skyline.core.errors import InvalidInput, RemoteError
from skyline.core.events import AnomalyEvent
from skyline.remote import Remote, RemoteClient
from skyline.remote.write import HEADERS, WriteSeries, batches, compress, encode
from skyline.runtime.context import Context, sleep_or_stop
from skyline.store import keys
from skyline.store.flatread import FlatReader
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.store.series import normalise
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

SCORE = "skyline_anomaly_score"
EVENT = "skyline_anomaly"
#: score points read from the end of each series first; a metric whose tail does not reach
#: back to what was sent is read again with 8 times more, up to the whole series
FIRST_TAIL = 8
EVENTS_PER_READ = 10_000
EVENTS_FIELD = "events"
_DROP_STATUSES = range(400, 500)
_RETRY_STATUSES = {401, 403, 408, 429}


@dataclass
class WriteResult:
    series: int = 0
    samples: int = 0
    requests: int = 0
    dropped: int = 0


def _score_field(metric: str) -> str:
    return f"scores {metric}"


class ScoreWriter:
    """Sends what is new at each `send(now)`; use with the RemoteClient of its component."""

    def __init__(self, ctx: Context, client: RemoteClient, tel: Telemetry):
        v = ctx.settings.vista
        self.ctx = ctx
        self.client = client
        self.tel = tel
        self.settings = v
        self.remote = Remote(
            "prometheus", v.remote_write_url, user=v.remote_write_user,
            password=v.remote_write_password.get_secret_value()
            if v.remote_write_password else "",
            token=v.remote_write_token.get_secret_value() if v.remote_write_token else "",
            timeout=v.timeout, max_body_bytes=1024 * 1024)
        self.labels = dict(v.remote_write_labels)
        self._sent: dict[str, float] | None = None
        self._reader = FlatReader(ctx.client, batch=ctx.settings.redis.read_chunk_size,
                                  initial_bytes=1 << 20)
        self._events_after: str | None = None

    # what was sent -------------------------------------------------------------------------
    def _load(self) -> None:
        raw = self.ctx.client.hgetall(keys.VISTA_WRITTEN)
        sent: dict[str, float] = {}
        events = None
        for k, val in raw.items():
            field = k.decode() if isinstance(k, bytes) else str(k)
            value = val.decode() if isinstance(val, bytes) else str(val)
            if field == EVENTS_FIELD:
                events = value
            elif field.startswith("scores "):
                try:
                    sent[field[len("scores "):]] = float(value)
                except ValueError:
                    continue
        self._sent, self._events_after = sent, events

    def _record(self, scores: dict[str, float], events_after: str | None) -> None:
        mapping: dict[str, str] = {_score_field(m): repr(t) for m, t in scores.items()}
        if events_after is not None:
            mapping[EVENTS_FIELD] = events_after
        if not mapping:
            return
        items = list(mapping.items())
        pipe = self.ctx.client.pipeline(transaction=False)
        for start in range(0, len(items), 5000):
            pipe.hset(keys.VISTA_WRITTEN, mapping=dict(items[start:start + 5000]))
        pipe.execute()
        assert self._sent is not None
        self._sent.update(scores)
        if events_after is not None:
            self._events_after = events_after

    # what is new ---------------------------------------------------------------------------
    def _new_scores(self, now: float) -> list[WriteSeries]:
        """Each metric's score points after the newest one sent (vectorised over metrics)."""
        assert self._sent is not None
        metrics = self.ctx.store.names()
        if not metrics:
            return []
        default = now - self.settings.remote_write_backfill
        since = np.array([self._sent.get(m, default) for m in metrics], dtype=np.float64)
        idx_parts, t_parts, v_parts = [], [], []
        todo = np.arange(len(metrics))
        depth = FIRST_TAIL
        while len(todo):
            flat = self._reader.read([metrics[i] for i in todo.tolist()], tail=depth,
                                     key_of=keys.scores)
            counts = flat.counts
            t, v = flat.timestamps.copy(), flat.values.copy()  # the reader reuses its buffer
            local = np.repeat(np.arange(len(todo)), counts)
            oldest = np.full(len(todo), np.inf)
            has = counts > 0
            if has.any():
                starts = np.r_[0, np.cumsum(counts)[:-1]]
                oldest[has] = np.fmin.reduceat(t, starts[has])
            # a tail as long as asked for may not reach back to what was sent: read further
            more = (counts >= depth) & (oldest > since[todo])
            keep = ~more[local]
            idx_parts.append(todo[local[keep]])
            t_parts.append(t[keep])
            v_parts.append(v[keep])
            todo = todo[more]
            depth *= 8
        idx = np.concatenate(idx_parts)
        ts = np.concatenate(t_parts)
        vs = np.concatenate(v_parts)
        keep = np.isfinite(ts) & (ts > since[idx]) & (ts <= now)
        idx, ts, vs = idx[keep], ts[keep], vs[keep]
        if not len(idx):
            return []
        order = np.lexsort((ts, idx))  # stable: of two writes of one timestamp the last wins
        idx, ts, vs = idx[order], ts[order], vs[order]
        last = np.r_[(idx[1:] != idx[:-1]) | (ts[1:] != ts[:-1]), True]
        idx, ts, vs = idx[last], ts[last], vs[last]
        cuts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1], True])
        out = []
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
            m = metrics[int(idx[a])]
            out.append(WriteSeries({**self.labels, "__name__": SCORE, "metric": m},
                                   ts[a:b], vs[a:b], key=m))
        return out

    def _new_events(self, now: float) -> tuple[list[WriteSeries], str | None]:
        """The anomaly events after the last one sent, grouped as series; and the stream id to
        record once they are sent."""
        start = (f"({self._events_after}" if self._events_after
                 else f"{max(0, int((now - self.settings.remote_write_backfill) * 1000))}-0")
        groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        last: str | None = None
        while True:
            entries = cast(list[Any], self.ctx.client.xrange(
                keys.ANOMALY_STREAM, min=start, max="+", count=EVENTS_PER_READ)) or []
            for entry_id, fields in entries:
                last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                if not fields:
                    continue
                try:
                    e = AnomalyEvent.from_json(fields.get(b"data", b""))
                except InvalidInput:
                    continue
                groups.setdefault((e.metric, e.source, e.status), []).append(
                    (e.timestamp, e.score))
            if len(entries) < EVENTS_PER_READ:
                break
            start = f"({last}"
        out = []
        for (metric, source, status), pts in groups.items():
            pts.sort()
            arr = np.array(pts, dtype=np.float64)
            t, v = normalise(arr[:, 0].copy(), arr[:, 1].copy())
            out.append(WriteSeries({**self.labels, "__name__": EVENT, "metric": metric,
                                    "source": source, "status": status}, t, v))
        return out, last

    # sending -------------------------------------------------------------------------------
    async def send(self, now: float) -> WriteResult:
        """Send what is new; RemoteError when the receiver failed (nothing past the last
        accepted request is recorded)."""
        if self._sent is None:
            await asyncio.to_thread(self._load)
        result = WriteResult()
        s = self.settings
        if s.remote_write_events:
            events, last = await asyncio.to_thread(self._new_events, now)
            await self._post_all(events, result)
            await asyncio.to_thread(self._record, {}, last)
        if s.remote_write_scores:
            scores = await asyncio.to_thread(self._new_scores, now)
            await self._post_all(scores, result, record=True)
        return result

    async def _post_all(self, series: Sequence[WriteSeries], result: WriteResult, *,
                        record: bool = False) -> None:
        for batch in batches(series, self.settings.remote_write_max_samples):
            n = sum(len(p.timestamps) for p in batch)
            body = await asyncio.to_thread(_body, batch)
            self.tel.incr("remote_write_requests")
            try:
                await self.client.post(self.remote, body, HEADERS)
            except RemoteError as e:
                if e.status not in _DROP_STATUSES or e.status in _RETRY_STATUSES:
                    raise
                # refused for good: sending these again would be refused again
                self.tel.incr("remote_write_dropped_samples", n)
                result.dropped += n
            else:
                self.tel.incr("remote_write_samples", n)
                self.tel.incr("remote_write_bytes", len(body))
                result.samples += n
            result.requests += 1
            result.series += len(batch)
            if record:
                newest: dict[str, float] = {}
                for p in batch:
                    if p.key and len(p.timestamps):
                        newest[p.key] = max(newest.get(p.key, -np.inf), float(p.timestamps[-1]))
                await asyncio.to_thread(self._record, newest, None)


def _body(batch: Sequence[WriteSeries]) -> bytes:
    return compress(encode(batch))


async def run_writer(ctx: Context, client: RemoteClient, tel: Telemetry) -> None:
    """Send every `remote_write_interval` seconds until stopping; a failed send waits for the
    receiver's backoff and is tried again."""
    writer = ScoreWriter(ctx, client, tel)
    interval = ctx.settings.vista.remote_write_interval
    log.info("vista: sending anomaly scores and events to %s every %g s",
             writer.remote.shown_url, interval)
    while not ctx.stopping.is_set():
        wait = interval
        try:
            r = await writer.send(time.time())
            log.debug("vista: remote_write: %d series, %d samples in %d requests", r.series,
                      r.samples, r.requests)
        except RemoteError:
            # counted and logged once per outage by the client
            tel.incr("remote_write_failures")
            wait = max(client.retry_in(writer.remote), 1.0)
        except CONNECTION_ERRORS as e:
            tel.incr("remote_write_failures")
            log.warning("vista: the hot store is unreachable (%s); sent again next time", e)
        except Exception:  # a failed send is logged; the next one tries again
            tel.incr("remote_write_failures")
            log.exception("vista: remote_write to %s failed", writer.remote.shown_url)
        if await sleep_or_stop(ctx.stopping, wait):
            return
