"""`skyline`: the one entry point."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

import click

from skyline import __version__
from skyline.cli.analysis import analyze
from skyline.cli.bench import bench
from skyline.cli.crucible import crucible
from skyline.cli.incidents import incidents
from skyline.cli.ionosphere import ionosphere
from skyline.cli.lazy import LazyChoice
from skyline.cli.users import user
from skyline.core.errors import SettingsError, SkylineError
from skyline.core.timeutil import iso, now, parse_time
from skyline.settings import Settings, load_settings
from skyline.settings.show import as_dict, as_toml

# commands that run services and log what they do; the others print an answer and exit
LONG_RUNNING = frozenset({"run", "serve"})


def _command() -> str | None:
    """The subcommand being run (`metrics` for `skyline metrics list`)."""
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().invoked_subcommand if ctx is not None else None


class _Obj:
    def __init__(self, config: str | None, debug: bool):
        self.config = config
        self.debug = debug
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from skyline.runtime.logs import setup_logging
            from skyline.settings.origins import DEFAULT, origin

            s = self._settings = load_settings(self.config)
            short = _command() not in LONG_RUNNING
            level = "DEBUG" if self.debug else s.LOG_LEVEL
            if short and not self.debug and origin(s, "LOG_LEVEL") == DEFAULT:
                # a short command prints its own answer; its log says only what went wrong
                # unless a LOG_LEVEL was asked for
                level = max(level, "WARNING", key=logging.getLevelName)
            setup_logging(level, s.LOG_FORMAT)
            if short and not self.debug:
                # the schema migrations a command applies on the way are library detail
                # (`skyline run` still logs them)
                logging.getLogger("alembic").setLevel(
                    max(logging.WARNING, logging.getLogger().level))
        return self._settings

    def data_settings(self) -> Settings:
        """The settings of a command that reads Skyline's data: DATA_DIR at its default
        finds the running instance's data (skyline.cli.datadir), or the command stops with a
        message naming where it looked."""
        from skyline.cli.datadir import require

        return require(self.settings())


class SkylineGroup(click.Group):
    """Turns Skyline's typed errors into one-line messages and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as e:
            for p in e.problems:
                click.echo(f"error: setting {p.line()}", err=True)
            _maybe_traceback(ctx)
            ctx.exit(1)
        except SkylineError as e:
            click.echo(f"error: {e}", err=True)
            _maybe_traceback(ctx)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:  # noqa: BLE001 - the edge: one line, traceback with --debug
            click.echo(f"error: {type(e).__name__}: {e}", err=True)
            _maybe_traceback(ctx, always_hint=True)
            ctx.exit(1)


def _maybe_traceback(ctx: click.Context, always_hint: bool = False) -> None:
    obj = ctx.find_object(_Obj)
    if obj is not None and obj.debug:
        traceback.print_exc()
    elif always_hint:
        click.echo("(run with --debug for the traceback)", err=True)


@click.group(cls=SkylineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", type=click.Path(dir_okay=False), envvar="SKYLINE_CONFIG",
              help="TOML settings file (default: $SKYLINE_CONFIG, else built-in defaults).")
@click.option("--debug", is_flag=True, help="Debug logging and tracebacks on errors.")
@click.version_option(__version__, prog_name="skyline")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool) -> None:
    """Skyline: real-time anomaly detection for operational metrics."""
    ctx.obj = _Obj(config, debug)


pass_obj = click.make_pass_decorator(_Obj)


# run / serve ---------------------------------------------------------------------------------
@cli.command()
@pass_obj
def run(obj: _Obj) -> None:
    """Start every component (embedded Redis and SQLite unless configured otherwise)."""
    from skyline.cli.runner import run_components
    from skyline.services.analyzer import check_settings

    check_settings(obj.settings())  # unknown ALGORITHMS: one clear line, before anything starts
    from skyline.cli.datadir import record

    record(obj.settings())  # so that commands run from elsewhere find this data
    sys.exit(run_components(obj.settings(), None, own_embedded=True, config=obj.config))


def _component_names() -> list[str]:
    from skyline.cli.components import REGISTRY

    return sorted(REGISTRY)


@cli.command()
@click.argument("component", type=LazyChoice(_component_names))
@pass_obj
def serve(obj: _Obj, component: str) -> None:
    """Run one component, e.g. to spread Skyline over several machines."""
    from skyline.cli.runner import run_components
    from skyline.services.analyzer import check_settings

    if component == "analyzer":
        check_settings(obj.settings())
    sys.exit(run_components(obj.settings(), [component], own_embedded=False))


# config ------------------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Show or check the settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML.")
@pass_obj
def config_show(obj: _Obj, as_json: bool) -> None:
    """Print the effective settings (secrets masked)."""
    s = obj.settings()
    click.echo(json.dumps(as_dict(s), indent=2) if as_json else as_toml(s), nl=as_json)


@config.command("check")
@pass_obj
def config_check(obj: _Obj) -> None:
    """Validate the settings; one line per problem (setting: value: reason), exit 1 if any."""
    from skyline.services.analyzer import check_settings

    check_settings(obj.settings())  # names of algorithms, against the installed registry
    click.echo("settings are valid")


# db ----------------------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """The SQL event store."""


@db.command("upgrade")
@pass_obj
def db_upgrade(obj: _Obj) -> None:
    """Apply pending schema migrations."""
    from skyline.cli.datadir import resolve
    from skyline.settings.show import mask_url
    from skyline.store.sql import db as sqldb

    s = resolve(obj.settings())
    engine = sqldb.make_engine(s.database_url, s.database.pool_size)
    try:
        sqldb.check(engine)
        before = sqldb.current_revision(engine)
        sqldb.upgrade(engine)
        after = sqldb.current_revision(engine)
    finally:
        engine.dispose()
    where = mask_url(s.database_url)
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: upgraded {before or 'empty'} -> {after}")


# metrics -------------------------------------------------------------------------------------------
@cli.group()
def metrics() -> None:
    """Metrics in the hot store."""


@metrics.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@pass_obj
def metrics_list(obj: _Obj, pattern: str | None, as_json: bool) -> None:
    """List metric names, all or those matching PATTERN (glob or re:regex)."""
    from skyline.core.patterns import validate
    from skyline.store.hotstore import HotStore
    from skyline.store.redis_client import redis_session

    if pattern:
        validate(pattern)
    with redis_session(obj.data_settings()) as h:
        names = HotStore(h.client).names(pattern)
    if as_json:
        click.echo(json.dumps(names))
    else:
        for n in names:
            click.echo(n)


@metrics.command("get")
@click.argument("name")
@click.option("--from", "from_", help="Start: Unix seconds, ISO 8601 or '-2h' (default: all).")
@click.option("--until", help="End: Unix seconds, ISO 8601 or '-10m' (default: now).")
@click.option("--json", "as_json", is_flag=True, help="JSON [[timestamp, value], ...].")
@pass_obj
def metrics_get(obj: _Obj, name: str, from_: str | None, until: str | None,
                as_json: bool) -> None:
    """Print a metric's points."""
    import numpy as np

    from skyline.core.errors import InvalidInput, NotFound
    from skyline.store import keys
    from skyline.store.hotstore import HotStore
    from skyline.store.redis_client import redis_session

    ref = now()
    try:
        since = parse_time(from_, reference=ref) if from_ else None
        end = parse_time(until, reference=ref) if until else None
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    with redis_session(obj.data_settings()) as h:
        store = HotStore(h.client)
        # --from is inclusive; the store's `since` is exclusive
        after = None if since is None else float(np.nextafter(since, -np.inf))
        series = store.read_one(name, since=after, until=end)
        if not len(series) and not h.client.sismember(keys.METRIC_INDEX, name):
            raise NotFound(f"no metric named {name!r} (see `skyline metrics list`)")
    if as_json:
        pairs = [[float(t), float(v)] for t, v in zip(series.timestamps, series.values, strict=True)]
        click.echo(json.dumps({"metric": name, "points": pairs}))
    else:
        for t, v in zip(series.timestamps, series.values, strict=True):
            click.echo(f"{iso(float(t))}\t{float(t):.3f}\t{float(v)!r}")


@metrics.command("delete")
@click.argument("pattern")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@pass_obj
def metrics_delete(obj: _Obj, pattern: str, dry_run: bool) -> None:
    """Delete every metric matching PATTERN (glob or re:regex) from the hot store."""
    from skyline.core.patterns import validate
    from skyline.store.hotstore import HotStore
    from skyline.store.redis_client import redis_session

    validate(pattern)
    with redis_session(obj.data_settings()) as h:
        store = HotStore(h.client)
        names = store.names(pattern)
        for n in names:
            click.echo(n)
        if dry_run:
            click.echo(f"{len(names)} metrics would be deleted (dry run)", err=True)
            return
        deleted = store.delete(names)
    click.echo(f"{deleted} metrics deleted", err=True)


# silences and alerts ---------------------------------------------------------------------------
def _sql_engine(s: Settings) -> Any:
    from skyline.cli.eventstore import open_event_store

    return open_event_store(s)


@cli.group()
def silence() -> None:
    """Silences: no alerts for matching metrics until a time."""


@silence.command("add")
@click.argument("pattern")
@click.option("--until", "until", required=True,
              help="End: a duration from now (2h, 1d), ISO 8601 or Unix seconds.")
@click.option("--reason", default="", help="Why, for the people who wonder.")
@click.option("--who", default=None, help="Who silenced (default: the login name).")
@click.option("--json", "as_json", is_flag=True, help="Print the silence as JSON.")
@pass_obj
def silence_add(obj: _Obj, pattern: str, until: str, reason: str, who: str | None,
                as_json: bool) -> None:
    """Silence metrics matching PATTERN (glob or re:regex)."""
    from skyline.services.webapp.alerts_api import default_who, parse_until
    from skyline.store.sql import alerts as q

    engine = _sql_engine(obj.data_settings())
    try:
        s = q.add_silence(engine, pattern, parse_until(until), reason=reason,
                          who=default_who() if who is None else who)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(s.as_dict()))
    else:
        click.echo(f"silence {s.id}: {s.pattern} until {iso(s.expires)}")


@silence.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include expired silences.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@pass_obj
def silence_list(obj: _Obj, include_expired: bool, as_json: bool) -> None:
    """List active silences."""
    from skyline.store.sql import alerts as q

    engine = _sql_engine(obj.data_settings())
    try:
        rows = q.list_silences(engine, include_expired=include_expired)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows]))
        return
    for r in rows:
        click.echo(f"{r.id}\t{r.pattern}\tuntil {iso(r.expires)}\t{r.who or '-'}\t{r.reason}")
    if not rows:
        click.echo("no active silences", err=True)


@silence.command("remove")
@click.argument("silence_id", type=int)
@pass_obj
def silence_remove(obj: _Obj, silence_id: int) -> None:
    """Remove silence SILENCE_ID (see `skyline silence list`)."""
    from skyline.store.sql import alerts as q

    engine = _sql_engine(obj.data_settings())
    try:
        q.remove_silence(engine, silence_id)
    finally:
        engine.dispose()
    click.echo(f"silence {silence_id} removed")


@cli.group()
def alert() -> None:
    """Alert channels."""


@alert.command("test")
@click.argument("channel", type=click.Choice(
    ["smtp", "slack", "pagerduty", "webhook", "alertmanager", "syslog"]))
@click.option("--json", "as_json", is_flag=True, help="The outcome as JSON.")
@pass_obj
def alert_test(obj: _Obj, channel: str, as_json: bool) -> None:
    """Send a test alert on CHANNEL now and print the outcome (exit 1 when it failed)."""
    from skyline.core.errors import InvalidInput
    from skyline.services.alerters.testalert import send_test

    s = obj.settings()
    if not s.alerters.channel(channel).enabled:
        raise InvalidInput(f"channel {channel} is not enabled (alerters.{channel}.enabled)")
    out = send_test(s, channel)
    if as_json:
        click.echo(json.dumps({"channel": out.channel, "ok": out.ok, "error": out.error,
                               "seconds": round(out.seconds, 3)}))
    elif out.ok:
        click.echo(f"{channel}: test alert sent in {out.seconds:.2f} s")
    else:
        click.echo(f"{channel}: test alert failed after {out.seconds:.2f} s: {out.error}",
                   err=True)
    if not out.ok:
        sys.exit(1)


@alert.command("log")
@click.option("--channel", default=None, help="Only this channel.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="A JSON list.")
@pass_obj
def alert_log(obj: _Obj, channel: str | None, limit: int, as_json: bool) -> None:
    """The newest delivery attempts (sent, error, expired, rate_limited)."""
    from skyline.store.sql import alerts as q

    engine = _sql_engine(obj.data_settings())
    try:
        rows = q.alert_log_rows(engine, channel=channel, limit=limit)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{iso(r['created'])}\t{r['channel']}\t{r['kind']}\t{r['status']}\t"
                   f"{r['metric']}\t{r['error']}")


# bench (in skyline.cli.bench) ------------------------------------------------------------------
cli.add_command(bench)

# analyze, crucible (in skyline.cli.analysis, skyline.cli.crucible) -----------------------------
cli.add_command(analyze)
cli.add_command(crucible)

# users of the web app (in skyline.cli.users) ----------------------------------------------------
cli.add_command(user)

# incidents across metrics (in skyline.cli.incidents) --------------------------------------------
cli.add_command(incidents)
cli.add_command(ionosphere)


def main() -> None:
    cli(prog_name="skyline")


if __name__ == "__main__":
    main()
