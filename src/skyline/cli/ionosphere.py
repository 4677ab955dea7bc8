"""`skyline ionosphere teach|list|disable|delete|matches|check|sync`: profiles taught by
operators and what the Ionosphere stage matched (docs/ionosphere.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from skyline.cli.eventstore import open_event_store
from skyline.core.timeutil import iso


def _settings(ctx: click.Context) -> Any:
    return ctx.find_root().obj.data_settings()  # reads stored data: skyline.cli.datadir


def _default_who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@click.group()
def ionosphere() -> None:
    """Teach Skyline what is not anomalous (or is): profiles and their matches."""


@ionosphere.command("teach")
@click.argument("event_id")
@click.option("--label", type=click.Choice(["not_anomalous", "anomalous"]),
              default="not_anomalous", show_default=True,
              help="not_anomalous: repeats are vetoed; anomalous: repeats always alert.")
@click.option("--note", default="", help="Why (shown with the profile).")
@click.option("--who", default=None, help="Who teaches (default: the OS user).")
@click.pass_context
def teach_cmd(ctx: click.Context, event_id: str, label: str, note: str,
              who: str | None) -> None:
    """Make a profile of anomaly EVENT_ID's stored window; live at the next candidate."""
    from skyline.analysis import ionosphere as ion
    from skyline.store.redis_client import redis_session

    s = _settings(ctx)
    engine = open_event_store(s)
    try:
        with redis_session(s) as h:
            p = ion.teach(engine, h.client, event_id, label, who or _default_who(), note)
    finally:
        engine.dispose()
    click.echo(f"profile #{p.id} of {p.metric}: {p.label}, {len(p.values)} points from "
               f"{iso(p.start)} to {iso(p.end)} every {p.resolution:g} s")


@ionosphere.command("list")
@click.argument("metric", required=False)
@click.option("--enabled/--all", "only_enabled", default=False,
              help="Only enabled profiles (default: all).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list (without the series).")
@click.pass_context
def list_cmd(ctx: click.Context, metric: str | None, only_enabled: bool,
             as_json: bool) -> None:
    """List profiles, newest first (one metric's with METRIC)."""
    from skyline.store.sql import ionosphere as q

    engine = open_event_store(_settings(ctx))
    try:
        rows = q.list_profiles(engine, metric, enabled=True if only_enabled else None)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([p.summary() for p in rows]))
        return
    for p in rows:
        state = "enabled" if p.enabled else f"disabled ({p.disabled_reason})"
        last = iso(p.last_matched) if p.last_matched is not None else "never"
        click.echo(f"#{p.id}\t{p.metric}\t{p.label}\t{state}\tby {p.who or '?'} from "
                   f"{iso(p.anchor)}\tmatched {p.matched_count} (last {last})")
    if not rows:
        click.echo("no profiles", err=True)


@ionosphere.command("disable")
@click.argument("profile_id", type=int)
@click.option("--enable", "enable", is_flag=True, help="Enable it again instead.")
@click.option("--reason", default="", help="Why (shown with the profile).")
@click.pass_context
def disable_cmd(ctx: click.Context, profile_id: int, enable: bool, reason: str) -> None:
    """Disable a profile (and those learnt from it), or --enable it."""
    from skyline.analysis import ionosphere as ion
    from skyline.store.redis_client import redis_session

    s = _settings(ctx)
    engine = open_event_store(s)
    try:
        with redis_session(s) as h:
            ids = ion.disable(engine, h.client, profile_id,
                              reason or f"disabled by {_default_who()}", enabled=enable)
    finally:
        engine.dispose()
    click.echo(f"{'enabled' if enable else 'disabled'}: "
               + ", ".join(f"#{i}" for i in ids))


@ionosphere.command("delete")
@click.argument("profile_id", type=int)
@click.pass_context
def delete_cmd(ctx: click.Context, profile_id: int) -> None:
    """Delete a profile and its matches."""
    from skyline.analysis import ionosphere as ion
    from skyline.store.redis_client import redis_session

    s = _settings(ctx)
    engine = open_event_store(s)
    try:
        with redis_session(s) as h:
            ion.delete(engine, h.client, profile_id)
    finally:
        engine.dispose()
    click.echo(f"deleted #{profile_id}")


@ionosphere.command("matches")
@click.option("--profile", "profile_id", type=int, default=None)
@click.option("--metric", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@click.pass_context
def matches_cmd(ctx: click.Context, profile_id: int | None, metric: str | None, limit: int,
                as_json: bool) -> None:
    """Candidates that matched a profile, newest first."""
    from skyline.store.sql import ionosphere as q

    engine = open_event_store(_settings(ctx))
    try:
        rows = q.list_matches(engine, profile_id=profile_id, metric=metric, limit=limit)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([m.summary() for m in rows]))
        return
    for m in rows:
        how = "vetoed" if m.applied else "shadow"
        review = {None: "", True: "\tright", False: "\tWRONG"}[m.validated]
        click.echo(f"{iso(m.timestamp)}\t{m.metric}\tprofile #{m.profile_id}\t{how}\t"
                   f"r={m.similarity:.2f}\t{m.event_id}{review}")
    if not rows:
        click.echo("no matches", err=True)


@ionosphere.command("check")
@click.argument("metric")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
@click.pass_context
def check_cmd(ctx: click.Context, metric: str, as_json: bool) -> None:
    """Dry run: would the stage veto METRIC's newest point now? Its series in the hot store
    against its enabled profiles; nothing is recorded."""
    from skyline.analysis import ionosphere as ion
    from skyline.core.errors import NotFound
    from skyline.store.hotstore import HotStore
    from skyline.store.redis_client import redis_session
    from skyline.store.sql import ionosphere as q

    s = _settings(ctx)
    engine = open_event_store(s)
    try:
        profiles = q.list_profiles(engine, metric, enabled=True, limit=100_000)
    finally:
        engine.dispose()
    with redis_session(s) as h:
        series = HotStore(h.client).read_one(metric)
    if not len(series):
        raise NotFound(f"no points for {metric!r} in the hot store")
    config = ion.IonosphereConfig.from_settings(s)
    got = {"metric": metric, **ion.dry_run(profiles, series.timestamps, series.values, None,
                                           config.rules)}
    if as_json:
        click.echo(json.dumps(got))
        return
    click.echo(f"{metric}: {got['verdict']} ({got['profiles']} enabled profiles)")
    for m in got["matches"]:
        click.echo(f"  profile #{m['profile_id']} ({m['label']}): r={m['correlation']:.3f} "
                   f"over {m['window_hours']:g} h, area {m['area_diff']:.0%} off")


@ionosphere.command("sync")
@click.pass_context
def sync_cmd(ctx: click.Context) -> None:
    """Rebuild the stage's profile cache in Redis from SQL."""
    from skyline.analysis import ionosphere as ion
    from skyline.store.redis_client import redis_session

    s = _settings(ctx)
    engine = open_event_store(s)
    try:
        with redis_session(s) as h:
            n = ion.sync(engine, h.client)
    finally:
        engine.dispose()
    click.echo(f"{n} enabled profiles published")
