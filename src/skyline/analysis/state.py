"""A metric's analysis state: one fixed-size binary record per metric, kept in the hot store
next to the metric (same hash tag, store/keys.py `analysis_state`) so it survives restarts.

    header     record version, which detector wrote the rest and its state version, and the
               cursor: the timestamp of the last analysis point processed (every point after
               it is new, every point at or before it is never processed again)
    incident   the open incident, if any (incidents.INCIDENT_DTYPE)
    detector   the detector's own state (empty for the window detectors)

A batch of metrics' records is one numpy structured array, so reading is one join and one
`frombuffer`, writing one `tobytes` per metric, and no field is ever parsed per metric in
Python. A blob that is not a record of this layout (another size, another record version) is
replaced by a fresh record, never misread; one written by another detector (or another
version of it) keeps its cursor-independent part, the open incident, and gets a fresh
detector part and cursor, so the new detector learns the window again before it speaks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from skyline.analysis import incidents

RECORD_VERSION = 1
HEADER_DTYPE = np.dtype([
    ("version", "<u2"),
    ("detector", "<u2"),  # DETECTOR_IDS of the detector that wrote the detector part
    ("detector_version", "<u2"),
    ("cursor", "<f8"),  # NaN: never processed (the next run bootstraps)
])
COMMON_DTYPE = np.dtype([("header", HEADER_DTYPE), ("incident", incidents.INCIDENT_DTYPE)])
States = npt.NDArray[np.void]


class Layout:
    """The record of one detector: the common part plus the detector's state dtype."""

    def __init__(self, detector_id: int, detector_version: int,
                 detector_dtype: np.dtype | None = None) -> None:
        self.detector_id = detector_id
        self.detector_version = detector_version
        fields = [("header", HEADER_DTYPE), ("incident", incidents.INCIDENT_DTYPE)]
        if detector_dtype is not None and detector_dtype.itemsize:
            fields.append(("detector", detector_dtype))
        self.dtype = np.dtype(fields)
        self.has_detector_state = "detector" in (self.dtype.names or ())

    @property
    def size(self) -> int:
        return int(self.dtype.itemsize)

    def fresh(self, n: int) -> States:
        s = np.zeros(n, dtype=self.dtype)
        s["header"]["version"] = RECORD_VERSION
        s["header"]["detector"] = self.detector_id
        s["header"]["detector_version"] = self.detector_version
        s["header"]["cursor"] = np.nan
        s["incident"] = incidents.fresh(n)
        return s

    def unpack(self, blobs: Sequence[bytes | None]) -> tuple[States, npt.NDArray[np.bool_]]:
        """Records from stored blobs (None: none stored). Returns the records and which of
        them were rebuilt (fresh or partly fresh) rather than read as they were."""
        n = len(blobs)
        size = self.size
        sizes = np.fromiter((len(b) if b is not None else -1 for b in blobs), dtype=np.int64,
                            count=n)
        whole = sizes == size
        out = self.fresh(n)
        if whole.any():
            idx = np.flatnonzero(whole)
            joined = b"".join(blobs[i] or b"" for i in idx.tolist())
            read = np.frombuffer(joined, dtype=self.dtype)
            h = read["header"]
            ok = (h["version"] == RECORD_VERSION) & (h["detector"] == self.detector_id) & \
                (h["detector_version"] == self.detector_version)
            out[idx[ok]] = read[ok]
            whole[idx[~ok]] = False
        rebuilt = ~whole
        # another detector's (or version's) record: keep its open incident
        common = COMMON_DTYPE.itemsize
        partial = rebuilt & (sizes >= common)
        if partial.any():
            idx = np.flatnonzero(partial)
            joined = b"".join((blobs[i] or b"")[:common] for i in idx.tolist())
            read = np.frombuffer(joined, dtype=COMMON_DTYPE)
            ok = read["header"]["version"] == RECORD_VERSION
            out["incident"][idx[ok]] = read["incident"][ok]
        return out, rebuilt

    @staticmethod
    def pack(states: States, rows: npt.NDArray[np.int64] | None = None) -> list[bytes]:
        """One blob per record (rows: a subset)."""
        part = states if rows is None else states[rows]
        raw = np.ascontiguousarray(part).tobytes()
        size = part.dtype.itemsize
        return [raw[i:i + size] for i in range(0, len(raw), size)]
