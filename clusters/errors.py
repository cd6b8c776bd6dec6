"""Errors of talking to one member cluster: few, flat, and safe to print.

Each carries the one line a user needs (what failed, against which server, the API's own
`Status.message`). Transport errors are chained as causes, never formatted into the
message, because some transports echo request headers and those hold bearer tokens.
"""

from __future__ import annotations

from typing import TypeVar, cast


class ClusterError(Exception):
    """Base: a call to a member cluster failed."""


class Unreachable(ClusterError):
    """No answer: connection refused, DNS, timeout, TLS handshake."""


class Unauthorized(ClusterError):
    """The server rejected or did not recognise our credentials (401, or anonymous)."""


class ApiError(ClusterError):
    """The API server answered with an error Status.

    `retry_after` is the server's own advice (a 429's Retry-After, or the Status'
    `details.retryAfterSeconds`); retries prefer it over their own backoff.
    """

    def __init__(
        self, message: str, *, status: int, reason: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class Forbidden(ApiError):
    """403: authenticated, but RBAC says no."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409."""


class Invalid(ApiError):
    """422: the object was rejected by validation."""


class Gone(ApiError):
    """410: a watch's resourceVersion is too old; re-list."""


def api_error(
    status: int, message: str, reason: str = "", retry_after: float | None = None
) -> ApiError:
    """The most specific ApiError subclass for an HTTP status."""
    kind = {403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}.get(
        status, ApiError
    )
    return kind(message, status=status, reason=reason, retry_after=retry_after)


E = TypeVar("E", bound=ClusterError)


def reworded(error: E, message: str) -> E:
    """The same error (class, status, reason, retry advice) with a new message.

    Lower layers know the request, only the caller knows which object it was for; the
    user needs that in the one line they read. Raise the result `from error`.
    """
    if isinstance(error, ApiError):
        return cast(E, api_error(error.status, message, error.reason, error.retry_after))
    return type(error)(message)
