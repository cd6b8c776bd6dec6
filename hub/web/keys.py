"""Random keys the web view hands out and takes back: browser sessions and the one-time
sign-in codes of `flotilla ui`.

Kept in memory only, as digests: a hub writes a new API token at every start, so a
session outliving the hub would outlive the token it was granted for. A key that leaks
from a browser (another program on another port of the same host receives the cookies
too: cookies do not keep ports apart) admits to the read-only view, never to the API.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable


class KeyRing:
    def __init__(
        self, lifetime: float, *, limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Keys live `lifetime` seconds; past `limit` live keys the oldest goes, so that no
        caller can make the hub hold keys without bound."""
        self.lifetime = lifetime
        self._limit = limit
        self._clock = clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def issue(self) -> str:
        self._forget_expired()
        key = secrets.token_urlsafe(32)
        self._expiry[_digest(key)] = self._clock() + self.lifetime
        while len(self._expiry) > self._limit:
            self._expiry.popitem(last=False)
        return key

    def holds(self, key: str | None) -> bool:
        """The key was issued here, is not dropped and has not expired."""
        if not key:
            return False
        expiry = self._expiry.get(_digest(key))
        return expiry is not None and self._clock() < expiry

    def take(self, key: str | None) -> bool:
        """`holds`, and the key is gone: a one-time code dies on its first use, even a
        late one."""
        held = self.holds(key)
        if key:
            self.drop(key)
        return held

    def drop(self, key: str) -> None:
        self._expiry.pop(_digest(key), None)

    def _forget_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[digest]


def _digest(key: str) -> bytes:
    """Looked up by digest, so that what the hub holds in memory is no usable key."""
    return hashlib.sha256(key.encode()).digest()
