"""The flux component's own task: its routes are served by the web app, so it keeps its
heartbeat (through its telemetry) and, when flux.kafka_brokers is set, consumes Kafka
(services/flux/kafka.py) until Skyline stops."""

from __future__ import annotations

from skyline.runtime.context import Context


async def run(ctx: Context) -> None:
    ctx.telemetry("flux").incr("starts")
    if ctx.settings.flux.kafka_brokers.strip():
        from skyline.services.flux.kafka import KafkaIngest

        await KafkaIngest(ctx).run()
    await ctx.stopping.wait()
