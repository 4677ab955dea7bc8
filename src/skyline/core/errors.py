"""Typed errors. They carry what a person needs; the CLI and web edges turn them into messages."""

from __future__ import annotations


class SkylineError(Exception):
    """Base of every error Skyline raises on purpose."""


class SettingsError(SkylineError):
    """One or more settings are invalid."""

    def __init__(self, problems: list[SettingProblem]):
        self.problems = problems
        super().__init__("; ".join(p.line() for p in problems))


class SettingProblem:
    """One invalid setting: its name, the value given and why it was refused."""

    __slots__ = ("setting", "value", "reason")

    def __init__(self, setting: str, value: object, reason: str):
        self.setting = setting
        self.value = value
        self.reason = reason

    def line(self) -> str:
        return f"{self.setting}: {self.value!r}: {self.reason}"

    def __repr__(self) -> str:
        return f"SettingProblem({self.line()})"


class PatternError(SkylineError):
    """A namespace pattern that cannot be compiled."""


class StoreUnavailable(SkylineError):
    """The hot store (Redis) or the SQL database cannot be reached."""

    def __init__(self, what: str, url: str, reason: str):
        self.what = what
        self.url = url
        self.reason = reason
        super().__init__(f"{what} unreachable at {url}: {reason}")


class ClusterUnsupported(SkylineError):
    """REDIS_URL names a node of a Redis Cluster. Each node holds only its own slots, so a
    client that talks to one node would read and write part of the data and call it whole;
    refuse instead, until the cluster-aware store exists."""

    def __init__(self, url: str, seen: str):
        self.url = url
        self.seen = seen
        super().__init__(
            f"Redis at {url} is a Redis Cluster node ({seen}); Skyline's hot store needs a "
            "standalone Redis (a primary, optionally with replicas): against a cluster it "
            "would analyse only the metrics on this node. Point REDIS_URL at a standalone "
            "Redis (see docs/settings.md, REDIS_URL).")


class PortInUse(SkylineError):
    """A listening port is taken; names the setting that chose it."""

    def __init__(self, setting: str, host: str, port: int, reason: str):
        self.setting = setting
        super().__init__(f"{setting}={port}: cannot listen on {host}:{port}: {reason}")


class NotFound(SkylineError):
    """A named thing (metric, anomaly, component) does not exist."""


class InvalidInput(SkylineError):
    """Input from a user or a client that is refused, with the reason."""


class UnknownAlgorithm(SkylineError):
    """An algorithm name that no built-in or installed plug-in provides."""


class DuplicateAlgorithm(SkylineError):
    """Two algorithms (built-in or plug-in) claim the same name."""


class RemoteError(SkylineError):
    """A remote source (Graphite, Prometheus) that did not give a usable answer. `reason` is a
    short word used as a counter name: unreachable, timeout, redirect, http_error, auth,
    too_large, bad_body, no_data. `status` is the HTTP status of an answer that had one."""

    def __init__(self, reason: str, url: str, detail: str, status: int | None = None):
        self.reason = reason
        self.url = url
        self.detail = detail
        self.status = status
        super().__init__(f"{url}: {detail}")
