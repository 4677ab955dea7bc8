"""[webapp] settings: users, login sessions and their cookies."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# also the rule `skyline user add` applies (skyline.store.sql.users)
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$"
MIN_PASSWORD_LENGTH = 8
MIN_TOKEN_LENGTH = 32
_ARGON2 = re.compile(r"^\$argon2(id|i|d)\$")


class SeedUser(BaseModel):
    """One user the settings create (and keep in step) at every start of the web app."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="Login name.")
    password: SecretStr | None = Field(
        None, json_schema_extra={"mask": "all"},
        description="Password in clear (prefer password_hash).",
    )
    password_hash: SecretStr | None = Field(
        None, json_schema_extra={"mask": "all"},
        description="An argon2 hash ($argon2id$...), e.g. from `skyline user hash`.",
    )
    admin: bool = Field(False, description="May manage other users.")
    tokens: list[SecretStr] = Field(
        default_factory=list, json_schema_extra={"mask": "all"},
        description=f"API tokens (at least {MIN_TOKEN_LENGTH} characters) this user has, "
        "for automation that cannot run `skyline user token`.",
    )

    @model_validator(mode="after")
    def _one_secret(self) -> SeedUser:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError(f"user {self.username!r}: give exactly one of password and "
                             "password_hash")
        if self.password is not None and len(self.password.get_secret_value()) < \
                MIN_PASSWORD_LENGTH:
            raise ValueError(f"user {self.username!r}: password shorter than "
                             f"{MIN_PASSWORD_LENGTH} characters")
        if self.password_hash is not None and not _ARGON2.match(
                self.password_hash.get_secret_value()):
            raise ValueError(f"user {self.username!r}: password_hash is not an argon2 hash "
                             "($argon2id$...)")
        for i, t in enumerate(self.tokens, 1):
            value = t.get_secret_value()
            # the token itself never goes into a message: it is a secret
            if len(value) < MIN_TOKEN_LENGTH or any(c.isspace() for c in value):
                raise ValueError(f"user {self.username!r}: token number {i} must be at least "
                                 f"{MIN_TOKEN_LENGTH} characters without spaces")
        return self


class WebappSettings(BaseModel):
    """[webapp]: users, login sessions and their cookies (WEBAPP_AUTH_* are the upstream
    switches)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    users: list[SeedUser] = Field(
        default_factory=list,
        description="Users created at start and kept in step with these settings (password, "
        "admin, tokens): [[webapp.users]] tables of username, password or password_hash, "
        "admin, tokens. Other users live in the database only (`skyline user add`).",
    )
    session_idle_timeout: float = Field(
        86400.0, ge=60, le=90 * 86400,
        description="Seconds without a request after which a login session ends.",
    )
    session_max_age: float = Field(
        7 * 86400.0, ge=60, le=365 * 86400,
        description="Seconds after login at which a session ends however active it is.",
    )
    secure_cookies: bool = Field(
        False,
        description="Always mark cookies Secure (sent over https only); false: only when the "
        "request came over https (as trust_proxy_headers decides).",
    )
    trust_proxy_headers: bool = Field(
        False,
        description="The web app is behind a reverse proxy that sets X-Forwarded-Proto and "
        "X-Forwarded-For: believe them for https and for the client address used by the "
        "login limits. Leave false when clients reach the web app directly.",
    )
    login_max_failures: int = Field(
        5, ge=1, le=1000,
        description="Failed logins per user name and client address before that pair is "
        "locked out; a client address is locked after ten times this many, whatever names "
        "it tries.",
    )
    login_lockout: float = Field(
        60.0, gt=0, le=86400,
        description="Seconds of the first lockout; each further failure doubles it (up to a "
        "day). A successful login, or an hour without failures, resets the count.",
    )

    max_body_bytes: int = Field(
        1_048_576, ge=65_536, le=1_073_741_824,
        description="Largest request body of any route but flux's (flux.max_body_bytes) and "
        "crucible uploads (20 MiB, twice their file limit): counted as it streams, chunked or "
        "not; larger requests get 413.",
    )
    login_concurrency: int = Field(
        2, ge=1, le=64,
        description="Password checks (argon2, ~50 ms of CPU each) run at once, in their own "
        "threads; more waiting logins than ten times this answer 503 at once.",
    )

    @field_validator("users")
    @classmethod
    def _unique(cls, v: list[SeedUser]) -> list[SeedUser]:
        seen: set[str] = set()
        for u in v:
            if u.username in seen:
                raise ValueError(f"user {u.username!r} is listed twice")
            seen.add(u.username)
        return v
