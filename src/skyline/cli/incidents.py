"""`skyline incidents list|show`: incidents across metrics, as the luminosity component
stored them (docs/luminosity.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from skyline.cli.eventstore import open_event_store
from skyline.core.timeutil import iso


def _settings(ctx: click.Context) -> Any:
    return ctx.find_root().obj.data_settings()


@click.group()
def incidents() -> None:
    """Incidents: metrics broken together, grouped (open first)."""


@incidents.command("list")
@click.option("--status", type=click.Choice(["open", "closed"]), default=None,
              help="Only open or only closed incidents.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@click.pass_context
def incidents_list(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """List incidents, open ones first, then newest first."""
    from skyline.services.webapp.luminosity_api import incident_dict
    from skyline.store.sql import luminosity as q

    engine = open_event_store(_settings(ctx))
    try:
        rows = q.list_incidents(engine, limit=limit, status=status)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([incident_dict(i) for i in rows]))
        return
    for i in rows:
        state = "open" if i.is_open else f"closed {iso(i.ended or i.started)}"
        click.echo(f"{i.id}\t{state}\tsince {iso(i.started)}\t{len(i.members)} metrics\t"
                   f"origin {i.origin}")
    if not rows:
        click.echo("no incidents", err=True)


@incidents.command("show")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="The incident as JSON.")
@click.pass_context
def incidents_show(ctx: click.Context, incident_id: str, as_json: bool) -> None:
    """One incident and its members, in the order they began."""
    from skyline.services.webapp.luminosity_api import incident_dict
    from skyline.store.sql import luminosity as q

    engine = open_event_store(_settings(ctx))
    try:
        inc = q.get_incident(engine, incident_id)
    finally:
        engine.dispose()
    d = incident_dict(inc)
    if as_json:
        click.echo(json.dumps(d))
        return
    click.echo(f"incident {d['id']} ({d['status']}), origin {d['origin']}, since "
               f"{iso(d['started'])}" + (f", ended {iso(d['ended'])}" if d["ended"] else ""))
    for m in d["members"]:
        end = iso(m["ended"]) if m["ended"] is not None else "open"
        how = m["relation"]
        if m["coefficient"] is not None:
            how += f" r={m['coefficient']:.2f} lag={m['shift_seconds']:+.0f}s"
        click.echo(f"  {iso(m['since'])}  {m['metric']}\t{how}\tended {end}")
