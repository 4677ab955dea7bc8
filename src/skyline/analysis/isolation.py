"""Running custom algorithms where a hang or a crash cannot hurt: a child process that is
killed and replaced when a call overruns its time limit.

A thread cannot be stopped, and code stuck in C (a ctypes call, a numpy loop) ignores every
signal but SIGKILL; a separate process is the only thing that can be stopped at a limit. The
parent sends a batch of series for one algorithm; the child answers one message per series,
in order, so the parent waits at most `max_time` for each answer. When an answer is late the
child is killed (SIGKILL), that series is marked errored and the algorithm is skipped for the
rest of the batch; a new child is started for the next call. An exception in the algorithm
only makes that series abstain.

Children come from a forkserver that has already imported numpy and the algorithms, so a
replacement costs a fork, not an interpreter start-up.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from skyline.analysis.customs import CustomSpec, Loaded, load
from skyline.core.types import FloatArray
from skyline.runtime.processes import mp_context

log = logging.getLogger(__name__)

ABSTAIN = -1
STARTUP_TIMEOUT = 60.0
ROWS_PER_MESSAGE = 256
MAX_CRASHES = 3  # per call: a child that dies this often is not restarted again for it

Row = tuple[str, FloatArray, FloatArray]  # metric, timestamps, values


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: int  # 1 anomalous, 0 normal, -1 abstained
    score: float
    text: str
    failure: str = ""  # "" | "error" | "timeout" | "crash" | "skipped" | "unavailable"
    error: str = ""  # the exception or reason, for the log


def _judge_one(loaded: Loaded, metric: str, t: FloatArray, v: FloatArray
               ) -> tuple[int, float, str, str]:
    from skyline.algorithms import Batch

    alg = loaded.for_metric(metric)
    batch = Batch(t.reshape(1, -1), v.reshape(1, -1), np.array([len(t)], dtype=np.int64))
    try:
        op = alg.run(batch)
        code = int(op.verdict[0])
        score = float(op.statistic[0])
        text = alg.describe(op, 0)
    except Exception as e:  # noqa: BLE001 - user code may raise anything; this series abstains
        return ABSTAIN, math.nan, f"abstained: the algorithm failed ({type(e).__name__}: {e})", \
            f"{type(e).__name__}: {e}"
    errors = op.context.get("errors")
    if errors is not None and errors[0]:
        why = loaded.recorder.error if loaded.recorder is not None else "an error"
        return ABSTAIN, math.nan, f"abstained: the algorithm failed ({why})", why
    return code, score, text, ""


def _child(conn: Connection, specs: Sequence[CustomSpec]) -> None:
    """The child process: load every algorithm, then answer batches until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    loaded: dict[str, Loaded] = {}
    errors: dict[str, str] = {}
    for spec in specs:
        try:
            loaded[spec.name] = load(spec)
        except BaseException as e:  # noqa: BLE001 - importing user code: anything goes
            errors[spec.name] = f"{type(e).__name__}: {e}"
    conn.send(("ready", errors))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        _, name, rows = msg
        for metric, t, v in rows:
            conn.send(_judge_one(loaded[name], metric, t, v))


class Isolation:
    """One child process for a set of custom algorithms, restarted on demand."""

    def __init__(self, specs: Sequence[CustomSpec], *, context: Any = None,
                 startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.specs = {s.name: s for s in specs}
        self.context = context or mp_context()
        self.startup_timeout = startup_timeout
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self.unavailable: dict[str, str] = {}  # algorithm -> why it could not be loaded
        self.restarts = 0

    # -- the child's life --------------------------------------------------------------------

    def _start(self) -> bool:
        parent, child = self.context.Pipe()
        proc = self.context.Process(target=_child, args=(child, list(self.specs.values())),
                                    name="skyline-custom-algorithms", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        if not parent.poll(self.startup_timeout):
            self._kill()
            for name in self.specs:
                self.unavailable[name] = (f"loading the custom algorithms took more than "
                                          f"{self.startup_timeout:g} s")
            return False
        try:
            _, errors = parent.recv()
        except (EOFError, OSError):
            self._kill()
            for name in self.specs:
                self.unavailable[name] = "the process loading the custom algorithms died"
            return False
        self.unavailable = dict(errors)
        for name, err in errors.items():
            log.error("custom algorithm %s cannot be loaded: %s", name, err)
        return True

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def _ensure(self) -> bool:
        if self._proc is not None and self._proc.is_alive():
            return True
        if self._proc is not None:
            self._kill()
            self.restarts += 1
        return self._start()

    def close(self) -> None:
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(2)
        self._kill()

    # -- calls ---------------------------------------------------------------------------------

    def run(self, name: str, rows: Sequence[Row]) -> list[Outcome]:
        """One outcome per row, in order. Never takes longer than the algorithm's
        max_time per row, and at most max_time beyond the rows answered in time."""
        spec = self.specs[name]
        out: list[Outcome] = []
        crashes = 0
        while len(out) < len(rows):
            if not self._ensure() or name in self.unavailable:
                why = self.unavailable.get(name, "its process could not be started")
                out += [Outcome(ABSTAIN, math.nan, f"abstained: not loaded ({why})",
                                "unavailable", why)] * (len(rows) - len(out))
                break
            stopped = self._run_some(spec, rows, out)
            if stopped == "timeout":
                left = len(rows) - len(out)
                out += [Outcome(ABSTAIN, math.nan, "abstained: not run, the algorithm timed "
                                "out earlier in this run", "skipped")] * left
                break
            if stopped == "crash":
                crashes += 1
                if crashes >= MAX_CRASHES:
                    left = len(rows) - len(out)
                    out += [Outcome(ABSTAIN, math.nan, "abstained: not run, the algorithm's "
                                    "process kept dying", "skipped")] * left
                    break
        return out

    def _run_some(self, spec: CustomSpec, rows: Sequence[Row], out: list[Outcome]) -> str:
        """Send the remaining rows and collect answers; '' when all answered, else why not."""
        assert self._conn is not None
        conn = self._conn
        while len(out) < len(rows):
            part = rows[len(out):len(out) + ROWS_PER_MESSAGE]
            try:
                conn.send(("run", spec.name, list(part)))
            except OSError:
                self._crashed(out, spec, "its process died")
                return "crash"
            for _ in part:
                started = time.monotonic()
                try:
                    ready = conn.poll(spec.max_time)
                    if ready:
                        code, score, text, error = conn.recv()
                except (EOFError, OSError):
                    self._crashed(out, spec, "its process died")
                    return "crash"
                if not ready:
                    took = time.monotonic() - started
                    self._kill()
                    self.restarts += 1
                    out.append(Outcome(
                        ABSTAIN, math.nan,
                        f"abstained: timed out after {took:.3g} s (max_execution_time "
                        f"{spec.max_time:g} s); its process was killed", "timeout",
                        f"no answer within max_execution_time {spec.max_time:g} s"))
                    return "timeout"
                out.append(Outcome(code, score, text, "error" if error else "", error))
        return ""

    def _crashed(self, out: list[Outcome], spec: CustomSpec, why: str) -> None:
        self._kill()
        self.restarts += 1
        out.append(Outcome(ABSTAIN, math.nan, f"abstained: the algorithm failed ({why})",
                           "crash", why))

    def __enter__(self) -> Isolation:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
