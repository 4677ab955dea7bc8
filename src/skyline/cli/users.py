"""`skyline user ...`: the web app's users and their API tokens."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from skyline.cli.eventstore import open_event_store
from skyline.core.errors import InvalidInput
from skyline.core.timeutil import iso, parse_until


def _engine(ctx: click.Context) -> Any:
    # the root's object is skyline.cli.main's _Obj (by duck type: under `python -m` that
    # module is __main__, and its class is not the one an import would give)
    return open_event_store(ctx.find_root().obj.data_settings())


def _read_password(password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """(the new password, whether it was generated and must be shown)."""
    from skyline.store.sql import users as q

    if password_stdin and generate:
        raise InvalidInput("--password-stdin and --generate exclude each other")
    if generate:
        return q.generate_password(), True
    if not password_stdin and sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt="Again",
                                err=True)
        return q.check_password(password), False
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise InvalidInput("no password on standard input (or use --generate)")
    return q.check_password(line), False


@click.group()
def user() -> None:
    """Users of the web app and their API tokens."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May manage other users.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (default when "
              "it is not a terminal; on a terminal you are asked twice).")
@click.option("--generate", is_flag=True, help="Generate a password and print it once.")
@click.pass_context
def user_add(ctx: click.Context, name: str, admin: bool, password_stdin: bool,
             generate: bool) -> None:
    """Add user NAME."""
    from skyline.store.sql import users as q

    q.check_username(name)
    password, show = _read_password(password_stdin, generate)
    engine = _engine(ctx)
    try:
        q.create_user(engine, name, password, is_admin=admin)
    finally:
        engine.dispose()
    click.echo(f"user {name} added{' (admin)' if admin else ''}")
    if show:
        click.echo(f"password: {password}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input.")
@click.option("--generate", is_flag=True, help="Generate a password and print it once.")
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool, generate: bool) -> None:
    """Set NAME's password; their browser sessions end, their API tokens stay."""
    from skyline.store.sql import users as q

    engine = _engine(ctx)
    try:
        found = q.get_user(engine, name)
        password, show = _read_password(password_stdin, generate)
        q.set_password(engine, name, password)
    finally:
        engine.dispose()
    click.echo(f"password of {name} changed; their sessions have ended")
    if show:
        click.echo(f"password: {password}")
    if found.origin == "settings":
        click.echo(f"note: {name} is defined in the settings, which set the password again "
                   "at the next start of the web app", err=True)


@user.command("token")
@click.argument("name")
@click.option("--label", default="", help="What the token is for, shown in `user list`.")
@click.option("--expires", default=None,
              help="When it stops working: a duration (90d, 12h), ISO 8601 or Unix seconds; "
              "default: never.")
@click.option("--json", "as_json", is_flag=True, help="The token and its record as JSON.")
@click.pass_context
def user_token(ctx: click.Context, name: str, label: str, expires: str | None,
               as_json: bool) -> None:
    """Create an API token for NAME and print it (shown only this once)."""
    from skyline.store.sql import users as q

    until = None
    if expires is not None:
        try:
            until = parse_until(expires)
        except InvalidInput as e:
            raise InvalidInput(f"--expires: {str(e).removeprefix('until: ')}") from None
    engine = _engine(ctx)
    try:
        record, token = q.create_token(engine, name, label, until)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({**record.as_dict(), "token": token}))
        return
    click.echo(token)
    ends = f"expires {iso(until)}" if until is not None else "does not expire"
    click.echo(f"token {record.id} for {name} ({ends}); use it as the header "
               "'Authorization: Bearer <token>'. It is not shown again.", err=True)


@user.command("token-revoke")
@click.argument("token_id", type=int)
@click.pass_context
def user_token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke API token TOKEN_ID (see `skyline user list`)."""
    from skyline.store.sql import users as q

    engine = _engine(ctx)
    try:
        q.revoke_token(engine, token_id)
    finally:
        engine.dispose()
    click.echo(f"token {token_id} revoked")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Users and their tokens as JSON.")
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List users and their API tokens (never the tokens themselves)."""
    from skyline.store.sql import users as q

    engine = _engine(ctx)
    try:
        people = q.list_users(engine)
        tokens = q.list_tokens(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([
            {**u.as_dict(), "tokens": [t.as_dict() for t in tokens if t.username == u.username]}
            for u in people]))
        return
    for u in people:
        role = "admin" if u.is_admin else "user"
        click.echo(f"{u.username}\t{role}\tfrom {u.origin}\tcreated {iso(u.created)}")
        for t in tokens:
            if t.username == u.username:
                used = iso(t.last_used) if t.last_used is not None else "never"
                ends = iso(t.expires) if t.expires is not None else "never"
                click.echo(f"  token {t.id}\t{t.prefix}...\t{t.name or '-'}\tlast used {used}"
                           f"\texpires {ends}")
    if not people:
        click.echo("no users yet (the web app creates 'admin' at its first start)", err=True)


@user.command("remove")
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, name: str) -> None:
    """Remove user NAME with their API tokens and sessions."""
    from skyline.store.sql import users as q

    engine = _engine(ctx)
    try:
        q.remove_user(engine, name)
    finally:
        engine.dispose()
    click.echo(f"user {name} removed")


@user.command("hash")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input.")
def user_hash(password_stdin: bool) -> None:
    """Print the argon2id hash of a password, for `password_hash` in [[webapp.users]]."""
    from skyline.store.sql import users as q

    password, _ = _read_password(password_stdin, False)
    click.echo(q.hash_password(password))
