"""What every channel is: a name, whether it resolves on recovery, and one send coroutine.

A send raises DeliveryError (with whether a retry can help) or lets a network error out;
the delivery worker turns either into a logged, recorded, retried attempt.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from skyline.core.errors import SkylineError
from skyline.services.alerters.content import Alert


class DeliveryError(SkylineError):
    """A channel refused or failed an alert. `retry` is False when sending the same alert
    again cannot succeed (the service said 400: the payload or the key is wrong)."""

    def __init__(self, message: str, *, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class Channel(Protocol):
    name: str
    resolves: bool  # sends something on recovery
    wants_graph: bool  # needs Alert.graph

    async def send(self, alert: Alert) -> None: ...

    async def aclose(self) -> None: ...


def check_response(r: httpx.Response, what: str) -> None:
    """2xx is delivered; 429 and 5xx are worth retrying; any other 4xx is not."""
    if 200 <= r.status_code < 300:
        return
    body = " ".join(r.text.split())[:300]
    retry = r.status_code == 429 or r.status_code >= 500 or r.status_code == 408
    raise DeliveryError(f"{what} answered HTTP {r.status_code}: {body}", retry=retry)


def http_client(timeout: float, verify: bool = True) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), verify=verify,
                             follow_redirects=False,
                             headers={"User-Agent": "skyline-alerters"})
