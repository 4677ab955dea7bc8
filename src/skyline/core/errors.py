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
    """A client that talks to one node met a Redis Cluster (a MOVED reply, or `who`, a
    component not ready for a cluster, was asked to run on one). Each node holds only its
    own slots, so such a client would read and write part of the data and call it whole;
    refuse instead. The store's own cluster client also raises it for MOVED/ASK, as the
    signal to re-learn the slot map."""

    def __init__(self, url: str, seen: str, who: str | None = None):
        self.url = url
        self.seen = seen
        self.who = who
        if who is not None:
            text = (f"Redis at {url} is a Redis Cluster; {who} does not run on a cluster "
                    f"yet ({seen}). On a cluster run the cluster-ready components "
                    "(horizon, analyzer, panorama, alerters, webapp, flux, roomba: each with "
                    "`skyline serve`, see docs/scaling.md) and "
                    "the others against a standalone Redis.")
        else:
            text = (f"Redis at {url} is a Redis Cluster node ({seen}); this client talks to "
                    "one node and would see only that node's metrics. Point REDIS_URL at "
                    "any node so the cluster is detected at start (docs/scaling.md), or at "
                    "a standalone Redis.")
        super().__init__(text)


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
