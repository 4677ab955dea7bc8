"""What every channel is: a name, whether it resolves on recovery, and one send coroutine.

A send raises DeliveryError (with whether a retry can help) or lets a network error out;
the delivery worker turns either into a logged, recorded, retried attempt.
"""

from __future__ import annotations

import asyncio
import re
from typing import Protocol

import httpx

from skyline.alerting.content import Alert
from skyline.core.errors import SkylineError


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


_URL_PATH = re.compile(r"(https?://[^/\s?#'\"]+)[^\s'\"]*")


def _without_paths(text: str) -> str:
    """An error as the alert log keeps it: URLs cut to their host, since a channel's URL
    may carry its token in the path or query (Slack's, a webhook's)."""
    return _URL_PATH.sub(r"\1/...", text)


async def attempt(channel: Channel, alert: Alert, timeout: float) -> tuple[bool, str, bool]:
    """One send: (delivered, error, worth retrying)."""
    try:
        await asyncio.wait_for(channel.send(alert), timeout)
    except DeliveryError as e:
        return False, str(e), e.retry
    except TimeoutError:
        return False, f"no answer within {timeout:g} s (alerters.timeout)", True
    except httpx.HTTPError as e:
        text = _without_paths(str(e))
        return False, f"{type(e).__name__}: {text}" if text else type(e).__name__, True
    except OSError as e:
        return False, e.strerror or str(e) or type(e).__name__, True
    return True, "", False
