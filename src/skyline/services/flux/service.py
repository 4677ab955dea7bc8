"""The flux component's own task: its routes are served by the web app, so it only keeps its
heartbeat (through its telemetry) until Skyline stops."""

from __future__ import annotations

from skyline.runtime.context import Context


async def run(ctx: Context) -> None:
    ctx.telemetry("flux").incr("starts")
    await ctx.stopping.wait()
