"""Reading many series at once into one buffer of packed points, for the analyzer.

`HotStore.read` gives one Python bytes object and one pair of arrays per metric. The analyzer
reads every metric every run (2.3 GB for 100k day-long series), so this path skips the
per-metric objects: it pipelines GETs as RESP it packs itself and copies each reply's bytes
straight from the socket buffer into one growing numpy buffer, where the points of all the
metrics lie end to end (the layout `skyline.algorithms.prepare_flat` takes). Per metric there
is one header to parse and one memcpy; no bytes object, no list of arrays.

The buffer is owned by a FlatReader and reused from one read to the next, so a long-running
reader does not pay the page faults of gigabytes of fresh memory every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import redis
from redis.connection import AbstractConnection

from skyline.core.errors import ClusterUnsupported
from skyline.store import keys
from skyline.store.series import POINT_DTYPE, POINT_SIZE

_RECV_SIZE = 1 << 20
_GET = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n"
_GETRANGE = b"*4\r\n$8\r\nGETRANGE\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\n-1\r\n"


@dataclass
class FlatStats:
    missing: int = 0  # names in the index without a series (deleted by trimming meanwhile)
    wrong_type: int = 0  # keys that are not strings
    corrupt: int = 0  # series with trailing bytes that are not a whole point


@dataclass
class Flat:
    """Series i is the counts[i] points after the first sum(counts[:i]) of `points`
    (structured float64 fields "t" and "v"). Views into the reader's buffer: valid until
    its next read."""

    points: npt.NDArray[np.void]
    counts: npt.NDArray[np.int64]
    stats: FlatStats = field(default_factory=FlatStats)
    beside: list[bytes | None] = field(default_factory=list)  # read(beside=...) values

    @property
    def timestamps(self) -> npt.NDArray[np.float64]:
        return self.points["t"]

    @property
    def values(self) -> npt.NDArray[np.float64]:
        return self.points["v"]


class _Protocol(redis.ConnectionError):
    """A reply this reader does not understand: the connection is out of step."""


class FlatReader:
    def __init__(self, client: redis.Redis, *, batch: int = 1000,
                 initial_bytes: int = 64 << 20) -> None:
        self.client = client
        self.batch = batch
        self._out = np.empty(initial_bytes, dtype=np.uint8)
        self._recv = bytearray(_RECV_SIZE)

    def read(self, names: Sequence[str],
             beside: Callable[[str], str] | None = None, *, tail: int | None = None,
             key_of: Callable[[str], str] = keys.series) -> Flat:
        """Every named series, in order; a missing or unreadable one has 0 points. With
        `beside`, also the (small) string value of the key beside(name) of every name, read in
        the same round trips (the analysis states: no second pass over the names). With
        `tail`, only the last `tail` points of each series (GETRANGE of its last bytes: what
        Luminosity reads around a recent anomaly; points are whole because the store only
        ever appends whole points). `key_of` names the packed string read for each name
        (default: its series; keys.scores reads the anomaly-score series)."""
        if tail is not None and tail < 1:
            raise ValueError("tail must be at least 1 point")
        counts = np.zeros(len(names), dtype=np.int64)
        stats = FlatStats()
        values: list[bytes | None] = []
        pool = self.client.connection_pool
        conn = pool.get_connection()
        used = 0
        try:
            if not isinstance(conn, AbstractConnection):  # pragma: no cover - exotic clients
                raise TypeError("FlatReader needs a plain redis-py connection")
            for lo in range(0, len(names), self.batch):
                chunk = names[lo:lo + self.batch]
                used = self._read_batch(conn, chunk, counts, lo, used, stats, beside, values,
                                        tail, key_of)
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            pool.release(conn)
        points = self._out[:used].view(POINT_DTYPE)
        return Flat(points, counts, stats, values)

    # -- internals ------------------------------------------------------------------------

    def _where(self) -> str:
        """The server, for a message: host:port or the socket path (never the password)."""
        kw = self.client.connection_pool.connection_kwargs
        if kw.get("path"):
            return str(kw["path"])
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"

    def _reserve(self, used: int, extra: int) -> None:
        need = used + extra
        if need > len(self._out):
            grown = np.empty(max(need, 2 * len(self._out)), dtype=np.uint8)
            grown[:used] = self._out[:used]
            self._out = grown

    def _read_batch(self, conn: AbstractConnection, names: Sequence[str],
                    counts: npt.NDArray[np.int64], offset: int, used: int,
                    stats: FlatStats, beside: Callable[[str], str] | None = None,
                    values: list[bytes | None] | None = None, tail: int | None = None,
                    key_of: Callable[[str], str] = keys.series) -> int:
        commands = []
        start_arg = b"-%d" % (tail * POINT_SIZE) if tail is not None else b""
        for name in names:
            key = key_of(name).encode()
            if tail is None:
                commands.append(_GET % (len(key), key))
            else:
                commands.append(_GETRANGE % (len(key), key, len(start_arg), start_arg))
            if beside is not None:
                other = beside(name).encode()
                commands.append(_GET % (len(other), other))
        conn.send_packed_command([b"".join(commands)])
        sock = conn._sock
        if sock is None:
            raise redis.ConnectionError("connection closed before the replies were read")
        buf = self._recv
        view = memoryview(buf)
        start = end = 0  # unparsed bytes are buf[start:end]

        def fill() -> None:
            nonlocal start, end
            if start == end:
                start = end = 0
            elif end == len(buf):
                # compact: move the unparsed tail to the front
                buf[: end - start] = buf[start:end]
                end -= start
                start = 0
            try:
                n = sock.recv_into(view[end:])
            except TimeoutError:
                raise redis.TimeoutError("Timeout reading from socket") from None
            except OSError as e:
                raise redis.ConnectionError(f"Error while reading from socket: {e}") from None
            if not n:
                raise redis.ConnectionError("Connection closed by server.")
            end += n

        for i in range(len(names)):
            nl = buf.find(b"\r\n", start, end)
            while nl < 0:
                fill()
                nl = buf.find(b"\r\n", start, end)
            kind = buf[start]
            if kind == 0x24 and buf[start + 1] == 0x2D:  # "$-1": a missing key
                stats.missing += 1
                start = nl + 2
            elif kind == 0x24:  # "$": a bulk string
                length = int(buf[start + 1:nl])
                start = nl + 2
                whole = length - length % POINT_SIZE
                if whole != length:
                    stats.corrupt += 1
                self._reserve(used, length)
                out = memoryview(self._out)
                have = min(end - start, length)
                out[used:used + have] = view[start:start + have]
                start += have
                got = have
                while got < length:  # the rest of a large value: straight into the output
                    try:
                        n = sock.recv_into(out[used + got:used + length])
                    except TimeoutError:
                        raise redis.TimeoutError("Timeout reading from socket") from None
                    except OSError as e:
                        raise redis.ConnectionError(f"Error while reading from socket: {e}") from None
                    if not n:
                        raise redis.ConnectionError("Connection closed by server.")
                    got += n
                while end - start < 2:  # the \r\n after the value
                    fill()
                start += 2
                counts[offset + i] = whole // POINT_SIZE
                used += whole
            elif kind == 0x5F:  # "_": RESP3's null, a missing key
                stats.missing += 1
                start = nl + 2
            elif kind in (0x2D, 0x21):  # "-" (or RESP3 "!" blob) error: WRONGTYPE
                if kind == 0x21:  # a blob error: its length, then the text
                    length = int(buf[start + 1:nl])
                    start = nl + 2
                    while end - start < length + 2:
                        fill()
                    nl = start + length
                if bytes(buf[start + 1:start + 5]) in (b"MOVE", b"ASK ", b"CLUS", b"TRYA",
                                                       b"MAST"):
                    # a cluster node answering for a slot it does not own, or a cluster
                    # down or failing over: never a partial read counted as wrong types
                    raise ClusterUnsupported(self._where(), bytes(buf[start + 1:nl][:60]).decode(
                        "ascii", "replace"))
                stats.wrong_type += 1
                start = nl + 2
            else:
                raise _Protocol(f"unexpected reply to GET: {bytes(buf[start:nl][:40])!r}")
            if beside is None:
                continue
            # the value beside it: a short string (or none, or another type: None)
            nl = buf.find(b"\r\n", start, end)
            while nl < 0:
                fill()
                nl = buf.find(b"\r\n", start, end)
            kind = buf[start]
            value: bytes | None = None
            if kind in (0x24, 0x21):  # "$" bulk (or "!" blob error), "$-1" missing
                length = int(buf[start + 1:nl])
                start = nl + 2
                if length >= 0:
                    while end - start < length + 2:
                        fill()
                    if kind == 0x24:
                        value = bytes(buf[start:start + length])
                    start += length + 2
            elif kind in (0x5F, 0x2D):  # RESP3 null, or an error (WRONGTYPE)
                start = nl + 2
            else:
                raise _Protocol(f"unexpected reply to GET: {bytes(buf[start:nl][:40])!r}")
            assert values is not None
            values.append(value)
        if start != end:
            raise _Protocol("more replies than commands sent")
        return used
