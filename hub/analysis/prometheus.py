"""One instant query to Prometheus, as one number or one line saying why not.

A measurement that yields no number is an error the analysis counts (`Measured.ERROR`),
never a retry here: `consecutiveErrorLimit` and `failDuration` already say how many a
canary tolerates. Every message is one line fit for `status` and names the Prometheus by
`Endpoint.display`, which carries no credential; whatever a library's error might echo of
one is masked.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from hub.tasks import first_line

_MASK = "***"
_NOT_A_RESULT = "the answer is not a Prometheus query result"


class MeasurementError(Exception):
    """No value from one measurement; the message is one line and holds no secret."""


@dataclass(frozen=True, repr=False)
class Endpoint:
    """A Prometheus (or anything serving its HTTP API: Thanos, Mimir, VictoriaMetrics).

    Credentials: a bearer `token`, or `username` and `password` for basic auth, or the
    URL's own `user:password@`. None of them appears in `repr` (which shows `display`:
    the URL may carry one) nor in a message."""

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL of Prometheus")
        try:
            _ = parts.port  # urllib checks the port only when it is read
        except ValueError:
            raise ValueError(f"{parts.hostname}: the port is not a number 0..65535") from None
        if self.token is not None and self._basic() is not None:
            raise ValueError(f"{self.display}: give a bearer token or basic auth, not both")

    def __repr__(self) -> str:
        return f"Endpoint({self.display!r})"

    @property
    def display(self) -> str:
        """The URL without user info, query or fragment: fit for a message."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @property
    def query_url(self) -> str:
        """Where an instant query goes: the URL's path + `/api/v1/query`, its query kept,
        its user info left to `headers`."""
        parts = urlsplit(self.url)
        netloc = parts.netloc.rpartition("@")[2]
        path = parts.path.rstrip("/") + "/api/v1/query"
        return urlunsplit((parts.scheme, netloc, path, parts.query, ""))

    @property
    def headers(self) -> dict[str, str]:
        """The `Authorization` header of the endpoint's credentials, if it has any."""
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token}"}
        basic = self._basic()
        if basic is None:
            return {}
        pair = base64.b64encode(":".join(basic).encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def scrub(self, text: str) -> str:
        """`text` with every credential of the endpoint masked."""
        parts = urlsplit(self.url)
        basic = self._basic()
        secrets = (
            self.token,
            basic[1] if basic else None,
            parts.password,
            parts.query,
            *(value.partition(" ")[2] for value in self.headers.values()),
        )
        for secret in sorted(filter(None, secrets), key=len, reverse=True):  # longest first
            text = text.replace(secret, _MASK)
        return text

    def _basic(self) -> tuple[str, str] | None:
        """User and password for basic auth: the fields', else the URL's."""
        if self.username is not None:
            return self.username, self.password or ""
        parts = urlsplit(self.url)
        if parts.username is None:
            return None
        return unquote(parts.username), unquote(parts.password or "")


def value_of(payload: Mapping[str, Any]) -> float:
    """The one number in a `/api/v1/query` answer: a scalar or a one-series vector."""
    if payload.get("status") == "error":
        raise MeasurementError(f"PromQL error: {_one_line(payload.get('error'))}")
    data = payload.get("data")
    if payload.get("status") != "success" or not isinstance(data, Mapping):
        raise MeasurementError(_NOT_A_RESULT)
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        sample = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            raise MeasurementError("query returned no series")
        if len(result) > 1:
            raise MeasurementError(
                f"query returned {len(result)} series; it must return one "
                "(aggregate it, e.g. with sum())"
            )
        sample = result[0].get("value") if isinstance(result[0], Mapping) else None
    elif kind == "matrix":
        raise MeasurementError(
            "query returned a range vector; it must return one number (drop the [range] "
            "selector, or wrap it, e.g. in rate())"
        )
    elif isinstance(kind, str):
        raise MeasurementError(f"query returned a {kind}; it must return one number")
    else:
        raise MeasurementError(_NOT_A_RESULT)
    return _sample_value(sample)


def _sample_value(sample: Any) -> float:
    """The value of a `[timestamp, "value"]` sample; Prometheus writes NaN and ±Inf so."""
    if not (isinstance(sample, list) and len(sample) == 2 and isinstance(sample[1], str)):
        raise MeasurementError("query returned a sample without a number (a histogram?)")
    try:
        value = float(sample[1])
    except ValueError:
        raise MeasurementError(f"query returned {sample[1][:40]!r}, not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise MeasurementError(f"query returned {sample[1]}; it must return a finite number")
    return value


def _one_line(text: Any) -> str:
    return " ".join(str(text or "no error text").split())


async def instant(
    session: aiohttp.ClientSession, endpoint: Endpoint, query: str, *, timeout: float
) -> float:
    """Evaluate `query` now at `endpoint`; raise `MeasurementError` if no number comes back.

    POSTed, form-encoded, as Prometheus's own UI does: a long query fits no URL."""
    shown = endpoint.display
    try:
        async with session.post(
            endpoint.query_url,
            data={"query": query},
            headers=endpoint.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                raise MeasurementError(
                    f"Prometheus at {shown} refused the credentials (HTTP {status})"
                )
            body = await response.text(errors="replace")
    except TimeoutError as e:
        raise MeasurementError(f"Prometheus at {shown}: no answer within {timeout:g}s") from e
    except aiohttp.ClientError as e:
        cause = endpoint.scrub(first_line(e))
        raise MeasurementError(f"Prometheus at {shown} unreachable: {cause}") from e
    payload = _json(body)
    if 200 <= status < 300 or (
        status in (HTTPStatus.BAD_REQUEST, HTTPStatus.UNPROCESSABLE_ENTITY)
        and payload.get("status") == "error"
    ):
        if not payload:
            raise MeasurementError(f"Prometheus at {shown} answered HTTP {status} without JSON")
        return value_of(payload)
    said = f": {_one_line(payload['error'])}" if payload.get("error") else ""
    raise MeasurementError(f"Prometheus at {shown} answered HTTP {status}{said}")


def _json(body: str) -> Mapping[str, Any]:
    """The answer's JSON object; empty if it is none (a proxy's HTML error page)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
