"""Flux keys and namespaces.

A request names its key in one of the ways its clients can send one: header `key` (upstream
flux, Telegraf, Prometheus `headers:`), `Authorization: Bearer <key>` or `Token <key>`
(Prometheus `authorization:`, OpenTelemetry, InfluxDB v2 clients), HTTP basic auth with the
key as password, or, where a route allows it, a query parameter (`key` for upstream's GET,
`p` for InfluxDB v1). The key's prefix, then the tenant header's value, become the first
elements of every metric name the request carries.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.requests import Request

from skyline.settings import Settings

_TENANT = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class AuthError(Exception):
    """A request refused before its body is read; `status` 401 (key) or 400 (tenant)."""

    def __init__(self, status: int, reason: str, message: str):
        self.status = status
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Namespace:
    """What goes in front of every name of one request: "" or "a.b." (with the dot)."""

    prefix: str = ""


class Keys:
    """FLUX_API_KEYS, compared in constant time so response timing does not reveal a key."""

    def __init__(self, settings: Settings):
        self._keys = [(k.encode(), prefix) for k, prefix in settings.FLUX_API_KEYS.items()]
        self.anonymous = settings.FLUX_ALLOW_ANONYMOUS
        self.tenant_header = settings.flux.tenant_header

    def prefix_of(self, key: str) -> str | None:
        given = key.encode()
        found: str | None = None
        for k, prefix in self._keys:
            if hmac.compare_digest(k, given):
                found = prefix
        return found

    def namespace(self, request: Request, key: str | None) -> Namespace:
        """The namespace of a request whose key (None: it has none) is `key`; AuthError when
        the key is missing or unknown, or the tenant header is malformed."""
        if key is None:
            if not self.anonymous:
                raise AuthError(401, "no_key", "no flux key: send header 'key', "
                                "'Authorization: Bearer <key>' or basic auth with the key "
                                "as password")
            parts: list[str] = []
        else:
            prefix = self.prefix_of(key)
            if prefix is None:
                raise AuthError(401, "bad_key", "invalid flux key")
            parts = [prefix] if prefix else []
        if self.tenant_header:
            tenant = request.headers.get(self.tenant_header)
            if tenant is not None:
                if not _TENANT.match(tenant):
                    raise AuthError(400, "bad_tenant", f"header {self.tenant_header}: a tenant "
                                    "is 1-128 letters, digits, '_' or '-'")
                parts.append(tenant)
        return Namespace("".join(p + "." for p in parts))


def _first(values: Iterable[str | None]) -> str | None:
    for v in values:
        if v:
            return v
    return None


def credential(request: Request, query_params: Sequence[str] = ()) -> str | None:
    """The key a request carries, wherever its client put it; None when it has none."""
    headers = request.headers
    auth = headers.get("authorization", "")
    scheme, _, value = auth.strip().partition(" ")
    scheme = scheme.lower()
    from_auth: str | None = None
    if scheme in ("bearer", "token"):
        from_auth = value.strip()
    elif scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        from_auth = decoded.partition(":")[2]
    return _first([headers.get("key"), from_auth,
                   *(request.query_params.get(p) for p in query_params)])
