"""Errors of talking to one member cluster: few, flat, and safe to print.

Each carries the one line a user needs (what failed, against which server, the API's own
`Status.message`). Transport errors are chained as causes, never formatted into the
message, because some transports echo request headers and those hold bearer tokens.

An API server's refusal of an object (422 Invalid, 409 Conflict) also carries the Status'
`details.causes`: each names a field and why. `refusal` words them as one line, because the
Status message of an invalid object embeds the rejected value, which for a pod template is
the whole template dumped in Go syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

# How Kubernetes' field errors (`field.Error`) begin: their type, then for most types the
# rejected value, then the detail. The value is what must not reach a user's line.
_WITH_VALUE = ("Invalid value", "Unsupported value", "Duplicate value", "Not found", "Too many")
_WITHOUT_VALUE = ("Required value", "Forbidden", "Too long", "Internal error")
# Brackets a rejected value may nest (Go literals, JSON); quotes it may contain them in.
_OPENING, _CLOSING = "{[(", "}])"
_QUOTES = '"`'
# A field manager's conflict, as the API server words a FieldManagerConflict cause.
_CONFLICT = re.compile(r'conflict with "(?P<manager>[^"]*)"')


@dataclass(frozen=True)
class Cause:
    """One entry of a Status' `details.causes`: which field, and the server's reason."""

    field: str
    message: str
    reason: str = ""

    @classmethod
    def of(cls, cause: Mapping[str, Any]) -> Cause:
        return cls(
            str(cause.get("field") or ""),
            str(cause.get("message") or ""),
            str(cause.get("reason") or ""),
        )

    @property
    def path(self) -> str:
        """The field as a user writes it: `spec.template`, not `.spec.template`."""
        return self.field.removeprefix(".")

    @property
    def manager(self) -> str | None:
        """For a field manager conflict: the manager that owns the field."""
        found = _CONFLICT.search(self.message)
        return found["manager"] if found and self.reason == "FieldManagerConflict" else None

    @property
    def why(self) -> str:
        """The reason without the rejected value: `field is immutable`, `Required value`."""
        message = self.message.strip()
        for kind in _WITHOUT_VALUE:
            if message.startswith(kind):
                return message.removeprefix(f"{kind}: ") or kind
        for kind in _WITH_VALUE:
            if message.startswith(f"{kind}: "):
                detail = _after_value(message[len(kind) + 2 :])
                return detail or kind
        return message


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
        self,
        message: str,
        *,
        status: int,
        reason: str = "",
        retry_after: float | None = None,
        causes: Sequence[Cause] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.causes = tuple(causes)


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
    status: int,
    message: str,
    reason: str = "",
    retry_after: float | None = None,
    causes: Iterable[Cause] = (),
) -> ApiError:
    """The most specific ApiError subclass for an HTTP status."""
    kind = {403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}.get(
        status, ApiError
    )
    return kind(
        message, status=status, reason=reason, retry_after=retry_after, causes=tuple(causes)
    )


def causes_of(status: Mapping[str, Any]) -> list[Cause]:
    """The causes of a Status document (an error answer's body); none if it has none."""
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, Mapping) else None
    return [Cause.of(c) for c in causes or () if isinstance(c, Mapping)]


def refusal(what: str, causes: Sequence[Cause]) -> str:
    """One line for a refusal of `what` (an object: `Job demo/web-migrate`): each field and
    why, `Job demo/web-migrate: spec.template: field is immutable`, never the value."""
    reasons = dict.fromkeys(f"{c.path}: {c.why}" if c.path else c.why for c in causes)
    return f"{what}: {'; '.join(reasons)}"


def _after_value(text: str) -> str:
    """What follows a field error's rejected value: its detail, or "" when it has none.

    The value is a Go literal or JSON (`"10.0.0.5"`, `core.PodTemplateSpec{...}`, `[]string
    {"a"}`, `{"metadata":...}`); it ends at the first `: ` outside brackets and quotes.
    """
    depth, quote, escaped = 0, "", False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in _QUOTES:
            quote = char
        elif char in _OPENING:
            depth += 1
        elif char in _CLOSING:
            depth = max(depth - 1, 0)
        elif depth == 0 and text.startswith(": ", index):
            return text[index + 2 :]
    return ""


E = TypeVar("E", bound=ClusterError)


def reworded(error: E, message: str) -> E:
    """The same error (class, status, reason, retry advice) with a new message.

    Lower layers know the request, only the caller knows which object it was for; the
    user needs that in the one line they read. Raise the result `from error`.
    """
    if isinstance(error, ApiError):
        return cast(
            E, api_error(error.status, message, error.reason, error.retry_after, error.causes)
        )
    return type(error)(message)
