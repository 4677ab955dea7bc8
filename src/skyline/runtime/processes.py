"""The multiprocessing context every Skyline worker process comes from."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

_CONTEXT: Any = None


def mp_context() -> Any:
    """A forkserver that has imported the heavy modules once (a plain fork of a process
    running an event loop and threads is unsafe; spawn pays a full interpreter start per
    process)."""
    global _CONTEXT
    if _CONTEXT is None:
        try:
            ctx: Any = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["numpy", "skyline.algorithms",
                                        "skyline.analysis.isolation"])
        except ValueError:  # no forkserver on this platform
            ctx = mp.get_context("spawn")
        _CONTEXT = ctx
    return _CONTEXT
