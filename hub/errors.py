"""The errors a user can meet, each knowing the one line the CLI prints and its exit code.

No traceback reaches a user: the CLI and the HTTP API catch `FlotillaError` and show
`str(error)`. Causes are chained with `raise ... from e` so logs keep the detail, while
the message itself never carries credentials.
"""

from __future__ import annotations

from http import HTTPStatus


class FlotillaError(Exception):
    """Base of every error Flotilla reports to a user."""

    exit_code: int = 1
    http_status: int = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(FlotillaError):
    """A file, flag or field the user gave is wrong; nothing was changed."""

    exit_code = 2
    http_status = HTTPStatus.UNPROCESSABLE_ENTITY


class NotFound(FlotillaError):
    exit_code = 3
    http_status = HTTPStatus.NOT_FOUND


class Conflict(FlotillaError):
    exit_code = 4
    http_status = HTTPStatus.CONFLICT


class ClusterUnavailable(FlotillaError):
    """A member cluster could not be reached or refused our credentials."""

    exit_code = 5
    http_status = HTTPStatus.BAD_GATEWAY


class HubUnavailable(FlotillaError):
    """The CLI could not reach a hub."""

    exit_code = 6
    http_status = HTTPStatus.SERVICE_UNAVAILABLE
