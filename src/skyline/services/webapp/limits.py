"""Failed-login limits: per user name and client address, and per client address alone.

After `max_failures` failures a pair is locked for `lockout` seconds, doubled by each further
failure (up to a day), so a guesser gets a handful of tries a day per address. The address
alone is locked after ten times as many failures, whatever names it tries, against a sweep
over many names. Names alone are not limited: that would let anyone lock out the admin.

Kept in the web app's memory: the counts restart with the process and are per web app
instance, which still keeps guessing to a few tries per hour per instance.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

FORGET_AFTER = 3600.0  # seconds without a failure after which an unlocked count is dropped
MAX_LOCKOUT = 86400.0
MAX_ENTRIES = 100_000  # oldest entries are dropped beyond this (memory bound under a flood)
ADDRESS_FACTOR = 10


@dataclass
class _Entry:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0
    checking: int = 0  # attempts whose password is being checked right now


class LoginLimiter:
    def __init__(self, max_failures: int, lockout: float):
        self.max_failures = max_failures
        self.lockout = lockout
        self._entries: OrderedDict[tuple[str | None, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: tuple[str | None, str], now: float) -> _Entry | None:
        e = self._entries.get(key)
        if (e is not None and e.locked_until <= now and not e.checking
                and now - e.last_failure > FORGET_AFTER):
            del self._entries[key]
            return None
        return e

    def locked_for(self, username: str, address: str, now: float) -> float:
        """Seconds until `username` may try again from `address`; 0 when it may now."""
        with self._lock:
            wait = 0.0
            for key in ((username, address), (None, address)):
                e = self._get(key, now)
                if e is not None:
                    wait = max(wait, e.locked_until - now)
            return max(0.0, wait)

    def begin(self, username: str, address: str, now: float) -> float:
        """Before a password is checked: 0 when it may be (the attempt then counts as a
        failure-to-be until `failed` or `succeeded`), else the seconds to wait.

        Counting attempts before the check, not after it, keeps a flood of parallel guesses
        to `max_failures` password checks: the others are refused without any work, and
        they do not lengthen the lockout, which only failures that ran do."""
        with self._lock:
            wait = 0.0
            keys = (((username, address), self.max_failures),
                    ((None, address), self.max_failures * ADDRESS_FACTOR))
            for key, limit in keys:
                e = self._get(key, now)
                if e is None:
                    continue
                wait = max(wait, e.locked_until - now)
                if e.failures + e.checking >= limit:
                    # the checks already under way may use up the allowance: wait for them
                    wait = max(wait, 1.0)
            if wait > 0:
                return wait
            for key, _limit in keys:
                e = self._get(key, now)
                if e is None:
                    e = self._entries[key] = _Entry(last_failure=now)
                e.checking += 1
            self._trim()
            return 0.0

    def _end_check(self, key: tuple[str | None, str]) -> _Entry | None:
        e = self._entries.get(key)
        if e is not None and e.checking:
            e.checking -= 1
        return e

    def failed(self, username: str, address: str, now: float) -> float:
        """Record a failure; returns the seconds the pair or address is now locked for."""
        with self._lock:
            wait = 0.0
            for key, limit in (((username, address), self.max_failures),
                               ((None, address), self.max_failures * ADDRESS_FACTOR)):
                self._end_check(key)
                e = self._get(key, now)
                if e is None:
                    e = self._entries[key] = _Entry()
                self._entries.move_to_end(key)
                e.failures += 1
                e.last_failure = now
                if e.failures >= limit:
                    lock = min(MAX_LOCKOUT, self.lockout * 2 ** (e.failures - limit))
                    e.locked_until = now + lock
                    wait = max(wait, lock)
            self._trim()
            return wait

    def _trim(self) -> None:
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def succeeded(self, username: str, address: str) -> None:
        """A correct password forgets the pair's failures (not the address's: one good
        account does not clear a sweep over others)."""
        with self._lock:
            self._end_check((None, address))
            self._entries.pop((username, address), None)

    def abandoned(self, username: str, address: str) -> None:
        """The check did not run to an answer (the database failed): no failure recorded."""
        with self._lock:
            self._end_check((username, address))
            self._end_check((None, address))
