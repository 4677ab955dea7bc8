"""A small HTTP server speaking Graphite's render JSON and Prometheus' query_range over
deterministic series, and receiving remote_write requests, plus the ways a remote goes wrong (slow, redirecting, garbage, huge
answers, refused credentials), for the remote client's and Vista's tests. Real sockets, real
HTTP: only the data behind it is made up (the system tests use real Graphite and Prometheus).
"""

from __future__ import annotations

import base64
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cramjam

from skyline.remote.prompb import WriteRequest

STEP = 60


def value_at(name: str, ts: float) -> float:
    """The made-up value of a series at a time: differs per name and per minute."""
    return float(sum(map(ord, name)) % 97 + (int(ts) // STEP) % 50)


class Behaviour:
    """What the server does; tests change it while it runs."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | slow | redirect | garbage | huge | error500 | error400
        self.release = threading.Event()  # a slow request waits for this
        self.slow_started = threading.Event()
        self.user = ""
        self.password = ""
        self.token = ""
        self.requests: list[str] = []
        self.null_at: set[int] = set()  # timestamps Graphite answers null for
        self.now: float | None = None  # Graphite's newest bucket (default: until)
        # what remote_write requests brought: (sorted labels, timestamp in ms, value)
        self.written: list[tuple[tuple[tuple[str, str], ...], int, float]] = []
        self.write_headers: list[dict[str, str]] = []

    def samples(self, **labels: str) -> list[tuple[float, float]]:
        """The (seconds, value) samples written to the series with these labels (a subset),
        in the order received."""
        want = set(labels.items())
        return [(ms / 1000.0, v) for lab, ms, v in self.written if want <= set(lab)]


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        b = self.behaviour
        got = self.headers.get("Authorization", "")
        if b.token:
            return got == f"Bearer {b.token}"
        if b.user:
            want = base64.b64encode(f"{b.user}:{b.password}".encode()).decode()
            return got == f"Basic {want}"
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        b = self.behaviour
        url = urlsplit(self.path)
        b.requests.append(self.path)
        q = parse_qs(url.query)
        if not self._authorised():
            self._send(401, b'{"status":"error","errorType":"unauthorized","error":"no"}')
            return
        if b.mode == "slow":
            b.slow_started.set()
            b.release.wait(60)
        if b.mode == "redirect":
            self._send(302, b"", headers={"Location": "http://elsewhere.invalid/render"})
            return
        if b.mode == "garbage":
            self._send(200, b"<html>login page</html>", "text/html")
            return
        if b.mode == "huge":
            self._send(200, b"[" + b" " * (2 * 1024 * 1024) + b"]")
            return
        if b.mode == "error500":
            self._send(500, b"internal error")
            return
        if url.path.endswith("/render"):
            self._send(200, json.dumps(self._render(q)).encode())
        elif url.path.endswith("/api/v1/query_range"):
            self._send(200, json.dumps(self._query_range(q)).encode())
        else:
            self._send(404, b"not found")

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        """A remote_write receiver at .../api/v1/write (snappy WriteRequest)."""
        b = self.behaviour
        b.requests.append(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self._authorised():
            self._send(401, b"unauthorized")
            return
        if b.mode == "slow":
            b.slow_started.set()
            b.release.wait(60)
        if b.mode == "redirect":
            self._send(307, b"", headers={"Location": "http://elsewhere.invalid/api/v1/write"})
            return
        if b.mode == "error500":
            self._send(500, b"internal error")
            return
        if b.mode == "error400":
            self._send(400, b"out of order sample")
            return
        if not urlsplit(self.path).path.endswith("/api/v1/write"):
            self._send(404, b"not found")
            return
        req = WriteRequest()
        req.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
        b.write_headers.append(dict(self.headers.items()))
        for series in req.timeseries:
            labels = tuple(sorted((lab.name, lab.value) for lab in series.labels))
            b.written += [(labels, s.timestamp, s.value) for s in series.samples]
        self._send(204, b"")

    def _render(self, q: dict[str, list[str]]) -> list[dict]:
        start, until = int(q["from"][0]), int(q["until"][0])
        newest = int(self.behaviour.now or until)
        first = (start // STEP + 1) * STEP  # Graphite's buckets after `from`
        out = []
        for target in q.get("target", []):
            pts = []
            for ts in range(first, newest + 1, STEP):
                v = None if ts in self.behaviour.null_at else value_at(target, ts)
                pts.append([v, ts])
            out.append({"target": target, "tags": {"name": target}, "datapoints": pts})
        return out

    def _query_range(self, q: dict[str, list[str]]) -> dict:
        query = q["query"][0]
        start, end, step = float(q["start"][0]), float(q["end"][0]), float(q["step"][0])
        n = int(math.floor((end - start) / step)) + 1
        result = []
        for instance in ("a:9100", "b:9100"):
            values = [[start + i * step, repr(value_at(query + instance, start + i * step))]
                      for i in range(n)]
            labels = {"instance": instance, "job": "node"}
            if "(" not in query:
                labels["__name__"] = query
            result.append({"metric": labels, "values": values})
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}


class FakeRemote:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        handler = type("Handler", (_Handler,), {"behaviour": self.behaviour})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.behaviour.release.set()
        self.server.shutdown()
        self.server.server_close()
