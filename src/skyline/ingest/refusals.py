"""A bounded sample of refused input in the log, with who sent it.

Counters say how much was refused; a person investigating also needs examples: what was
refused, why, and from which address. Each reason gets its own small budget of log lines per
minute (a flood of one kind of garbage cannot hide another kind, as one shared warning per
minute did), and the reasons that point at an attack rather than a broken client get a larger
one. Past its budget a reason is only counted, and the next line logged says how many were
not shown.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("skyline.ingest.refused")

PER_MINUTE = 5
#: reasons that point at an attack or a hostile sender: logged far more often
SECURITY_REASONS = frozenset({"forbidden_global", "forbidden_opcode", "memo_index",
                              "bad_key", "buffer_limit", "too_many_connections"})
SECURITY_PER_MINUTE = 60
_MAX_REASONS = 1000  # distinct (protocol, reason) pairs remembered: reasons are our own names


class RefusalLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (protocol, reason) -> [minute, logged this minute, held back since the last line]
        self._state: dict[tuple[str, str], list[int]] = {}

    def refused(self, protocol: str, reason: str, count: int = 1, peer: str | None = None,
                detail: str = "") -> None:
        minute = int(time.monotonic() // 60)
        budget = SECURITY_PER_MINUTE if reason in SECURITY_REASONS else PER_MINUTE
        with self._lock:
            st = self._state.get((protocol, reason))
            if st is None:
                if len(self._state) >= _MAX_REASONS:
                    self._state.clear()
                st = self._state[(protocol, reason)] = [minute, 0, 0]
            if st[0] != minute:
                st[0], st[1] = minute, 0
            if st[1] >= budget:
                st[2] += count
                return
            st[1] += 1
            held, st[2] = st[2], 0
        level = logging.WARNING if reason in SECURITY_REASONS else logging.INFO
        log.log(level, "refused %s input%s: %s%s%s%s", protocol,
                f" from {peer}" if peer else "", reason, f" x{count}" if count > 1 else "",
                f" ({detail})" if detail else "",
                f" [{held} more refusals like it not logged]" if held else "")
