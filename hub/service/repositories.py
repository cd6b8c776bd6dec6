"""The verbs behind `flotilla repo ...`: chart repositories and registries that need
credentials, registered once with the hub and used by every fetch from their URL.

A repository is registered only once the repository itself took its credentials (one
request: an HTTP repository's index.yaml, or a registry login), so a typo in a password is
said at `repo add`, not at the next `up`. The password or token is kept like kubeconfig
credentials: in the 0600 store, known to the log scrubber from the moment it arrives,
and never in an answer (`repo list` shows who logs in and how, never with what).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from hub.charts import ChartCache
from hub.charts.repositories import authorization
from hub.errors import Conflict, InvalidInput
from hub.model.records import RepositoryAuth, RepositoryKind, RepositoryRecord
from hub.model.timestamps import timestamp
from hub.model.views import RepositoryList, RepositoryView
from hub.redaction import Scrubber
from hub.state.interface import ClusterStore
from placement.errors import PlacementError
from placement.names import validate_dns_label

log = logging.getLogger(__name__)

_KINDS: dict[str, RepositoryKind] = {"http": "http", "https": "http", "oci": "oci"}


def repository_secrets(record: RepositoryRecord) -> list[str]:
    """What of `record` must never be shown: the secret, and the header that carries it
    (base64 of `user:password` for basic auth, which a library could echo)."""
    return [record.secret, authorization(record).split(" ", 1)[1]]


class Repositories:
    def __init__(self, store: ClusterStore, scrubber: Scrubber, charts: ChartCache) -> None:
        """Every stored secret is known to the scrubber from the hub's start on."""
        self.store = store
        self.scrubber = scrubber
        self.charts = charts
        for record in store.repositories():
            scrubber.add(repository_secrets(record))

    def ls(self) -> RepositoryList:
        return RepositoryList(repositories=[view(r) for r in self.store.repositories()])

    async def add(
        self,
        name: str,
        url: str,
        *,
        username: str | None,
        password: str | None,
        token: str | None,
    ) -> RepositoryView:
        """Register `name` for `url` once the repository took the credentials; nothing is
        stored if it did not."""
        kind = _check(name, url)
        auth = _auth(kind, username, password, token)
        for other in self.store.repositories():
            if other.name == name:
                raise Conflict(
                    f"repository {name!r} is already registered; remove it first "
                    f"(`flotilla repo remove {name}`) to change its URL or credentials"
                )
            if other.url.rstrip("/") == url.rstrip("/"):
                raise Conflict(f"{url} is registered already, as repository {other.name!r}")
        secret = token if auth == "token" else password
        assert secret is not None, "_auth demands one"
        record = RepositoryRecord(
            name=name,
            url=url.rstrip("/"),
            kind=kind,
            auth=auth,
            username=username or "",
            secret=secret,
        )
        self.scrubber.add(repository_secrets(record))
        await self.charts.check_credentials(record)
        self.store.add_repository(record)
        log.info("repository %s (%s) registered, %s auth", name, record.url, auth)
        return view(record)

    def remove(self, name: str) -> dict[str, Any]:
        """Forget `name` and its credentials. Charts already fetched stay in the cache; a
        later fetch from its URL goes without credentials."""
        self.store.delete_repository(name)
        log.info("repository %s removed", name)
        return {"removed": name}


def view(record: RepositoryRecord) -> RepositoryView:
    """The public shape of a repository: never its secret."""
    return RepositoryView(
        name=record.name,
        url=record.url,
        kind=record.kind,
        username=record.username or None,
        auth=record.auth,
        added=timestamp(record.created_at),
    )


def _check(name: str, url: str) -> RepositoryKind:
    try:
        validate_dns_label(name)
    except PlacementError as e:
        raise InvalidInput(f"repository name: {e}") from None
    parts = urlsplit(url)
    kind = _KINDS.get(parts.scheme)
    if kind is None or not parts.hostname:
        raise InvalidInput(
            f"url {url}: expected an http:// or https:// chart repository, or an oci:// "
            "registry (oci://host[:port][/path])"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "url: give credentials with --username and --password-stdin (or --token-stdin), "
            "not in the URL, where they would be shown wherever the URL is"
        )
    if parts.query or parts.fragment:
        raise InvalidInput(f"url {url}: a repository URL has no query or fragment")
    return kind


def _auth(
    kind: RepositoryKind, username: str | None, password: str | None, token: str | None
) -> RepositoryAuth:
    """How the repository is logged in to, from what was given."""
    if token is not None and (password is not None or username):
        raise InvalidInput("give either a username and password, or a token, not both")
    if token is not None:
        if kind == "oci":
            raise InvalidInput(
                "a registry login takes a username and password; give a token as the "
                "password: --username USER --password-stdin"
            )
        if not token:
            raise InvalidInput("token: the token read is empty")
        return "token"
    if username and ":" in username:
        raise InvalidInput("username: a basic-auth user name cannot hold ':'")
    if not username or password is None:
        raise InvalidInput(
            "credentials: give --username USER with --password-stdin, or --token-stdin"
        )
    if not password:
        raise InvalidInput("password: the password read is empty")
    return "basic"
