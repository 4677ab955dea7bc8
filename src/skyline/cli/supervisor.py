"""Running a component in a process of its own, supervised: `skyline run` starts the
components that parse untrusted input (horizon's listeners) this way, so that a slow parse,
a hostile frame or a crash there cannot stall the web UI and API, the alerters or the
analyzer's scheduling, which stay in the main process.

The main process binds every port (a taken port still fails the start naming its setting)
and hands the listening sockets to the child, which serves them with the same code as
`skyline serve <component>`, attached to the same hot store. The child is restarted when it
exits on its own, after a backoff that doubles up to MAX_BACKOFF (and starts again from
FIRST_BACKOFF once a child has run for STABLE seconds); each start and exit is counted
(`supervisor_<component>_starts`, `_exits`) and logged. Its heartbeat, written by the child
itself, is what /api/v1/health shows.

Stopping goes through a pipe rather than a signal: the child stops when the parent closes
its end (or dies), which it notices whenever it gets to look, even if that was while it was
still starting (a signal then would have killed it with connections waiting unread in the
listening sockets' backlog). It then drains its connections and flushes, and is killed if it
still runs after its drain time and STOP_GRACE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys

from skyline.runtime.context import Context

log = logging.getLogger(__name__)

#: environment variable naming the sockets a child inherits: {setting: file descriptor}
SOCKETS_ENV = "_SKYLINE_CHILD_SOCKETS"
#: environment variable naming the read end of the child's stop pipe
STOP_ENV = "_SKYLINE_CHILD_STOP"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE = 60.0  # seconds a child must run for its next crash to restart it at once
STOP_GRACE = 10.0  # seconds a child gets beyond its drain time to stop after SIGTERM


def watch_stop_pipe(stopping: asyncio.Event) -> bool:
    """In a supervised child: set `stopping` when the parent closes the stop pipe (or dies);
    False when this process is not such a child."""
    raw = os.environ.pop(STOP_ENV, None)
    if raw is None:
        return False
    fd = int(raw)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        if not data:  # end of file: the parent's end is closed
            loop.remove_reader(fd)
            stopping.set()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    return True


def _ignore_stop_signals() -> None:
    # in the child before it runs Skyline: a Ctrl-C meant for the parent's terminal must not
    # kill it half-started; it stops through the pipe (its own handlers replace these)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def inherited_sockets() -> dict[str, socket.socket] | None:
    """In a supervised child: the sockets the parent bound, by setting; None otherwise."""
    raw = os.environ.pop(SOCKETS_ENV, None)
    if raw is None:
        return None
    socks = {}
    for setting, fd in json.loads(raw).items():
        s = socket.socket(fileno=int(fd))
        s.setblocking(False)
        socks[setting] = s
    return socks


async def supervise(ctx: Context, component: str, socks: dict[str, socket.socket],
                    config: str | None) -> None:
    """Keep `skyline serve <component>` running in a child process until Skyline stops."""
    tel = ctx.telemetry("supervisor")
    fds = {setting: s.fileno() for setting, s in socks.items()}
    env = dict(os.environ)
    env[SOCKETS_ENV] = json.dumps(fds)
    if config is not None:
        env["SKYLINE_CONFIG"] = os.path.abspath(config)
    argv = [sys.executable, "-m", "skyline.cli.main", "serve", component]
    loop = asyncio.get_running_loop()
    backoff = FIRST_BACKOFF
    while not ctx.stopping.is_set():
        started = loop.time()
        stop_read, stop_write = os.pipe()
        env[STOP_ENV] = str(stop_read)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, pass_fds=(*fds.values(), stop_read),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                preexec_fn=_ignore_stop_signals)
        finally:
            os.close(stop_read)
        tel.incr(f"{component}_starts")
        log.info("%s runs in process %d", component, proc.pid)
        waiter = asyncio.create_task(proc.wait())
        stop = asyncio.create_task(ctx.stopping.wait())
        await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if ctx.stopping.is_set():
            # our copies first: the child's then close the ports for good, so no sender
            # connects to a socket nobody will read
            for s in socks.values():
                s.close()
            os.close(stop_write)
            await _stop(proc, waiter, component, ctx.settings.horizon.drain_timeout)
            return
        os.close(stop_write)
        code = waiter.result()
        tel.incr(f"{component}_exits")
        if loop.time() - started >= STABLE:
            backoff = FIRST_BACKOFF
        log.error("%s (process %d) exited with %s; restarting it in %.1f s", component,
                  proc.pid, _how(code), backoff)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.stopping.wait(), backoff)
        backoff = min(MAX_BACKOFF, backoff * 2)


async def _stop(proc: asyncio.subprocess.Process, waiter: asyncio.Task[int], component: str,
                drain: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(waiter), drain + STOP_GRACE)
    except TimeoutError:
        log.error("%s (process %d) did not stop within %.0f s of being asked; killing it",
                  component, proc.pid, drain + STOP_GRACE)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await waiter
    if waiter.result() not in (0, -signal.SIGTERM, -signal.SIGINT):
        log.error("%s (process %d) stopped with %s", component, proc.pid, _how(waiter.result()))


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
