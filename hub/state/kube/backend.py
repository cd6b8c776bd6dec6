"""The Kubernetes store's engine room: its own event loop in a daemon thread, the one
client of the management cluster, the mirror, and the guarded writes both stores make.

The hub calls its store synchronously from its own loop; a Kubernetes write takes a
round trip, which must not run on that loop's thread of control (it would need the
loop it blocks). So the store runs a loop of its own, and every call is handed to it
and waited for, bounded. Reads run there too, on the mirror, without a round trip: they
are a thread hop, never a request.

Every write is a read-modify-write of ONE object guarded by its resourceVersion: a pure
mutation applied to the mirror's copy, sent with that version; a 409 gets the object
fresh and applies the mutation again, so that a lost race is retried from fresh state
and never overwrites. Nothing here knows what the objects mean.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

from clusters.client import ClusterClient
from clusters.errors import (
    ApiError,
    ClusterError,
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unreachable,
)
from clusters.kubeconfig import KubeconfigError, load_file
from clusters.resources import Backoff
from hub.errors import FlotillaError
from hub.state.interface import StoreUnavailable
from hub.state.kube.mirror import Mirror, copy_of
from hub.state.kube.resources import (
    API_VERSION,
    KINDS,
    SECRET,
    Object,
    crd,
    namespace_manifest,
    resource_version,
    signed,
    writer_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Mutation = Callable[[Object | None], Object | None]

# Attempts of one read-modify-write before it gives up: each lost race means another
# writer changed the object in between; eight in a row is a store under siege, not luck.
ATTEMPTS = 8
# Installing the CRDs and listing every kind at start takes a few round trips and the
# API server's few seconds to establish a new CRD: this many times the call timeout.
START_TIMEOUTS = 3
# Polling a CRD until Established: it takes the API server well under a second.
ESTABLISHING = Backoff(first=0.05, factor=2.0, cap=1.0)
# Time for the client's TLS connections to close after the client did.
CLOSE_GRACE = 0.25
FIELD_MANAGER = "flotilla"
APPLY = "application/apply-patch+yaml"
_PLURALS = {kind.kind: kind.plural for kind in KINDS} | {SECRET: "secrets"}


class StoreRefused(FlotillaError):
    """The management cluster refused an object the store wrote (too large, invalid):
    nothing of the change was kept. 507, as a full disk is for SQLite: the hub's
    condition, not the request's."""

    http_status = HTTPStatus.INSUFFICIENT_STORAGE


def unavailable(server: str, error: BaseException, *, at_start: bool = False) -> StoreUnavailable:
    """One line naming the server and what failed, never the credentials."""
    if isinstance(error, Unauthorized):
        reason = "it refuses the kubeconfig's credentials"
    elif isinstance(error, Forbidden):
        reason = "the kubeconfig's user may not manage the store's objects (RBAC)"
    else:
        reason = str(error) or type(error).__name__
    advice = (
        "check --store-kubeconfig and that the management cluster is up"
        if at_start
        else "nothing of this change was kept"
    )
    return StoreUnavailable(
        f"the hub's store (Kubernetes API at {server}) cannot be reached: {reason}; {advice}"
    )


def path_of(namespace: str, kind: str, name: str | None = None) -> str:
    base = "/api/v1" if kind == SECRET else f"/apis/{API_VERSION}"
    path = f"{base}/namespaces/{namespace}/{_PLURALS[kind]}"
    return f"{path}/{name}" if name else path


async def install_with(client: ClusterClient, namespace: str, timeout: float) -> None:
    """The namespace and every CRD, created or updated (server-side apply, forced: the
    store owns them), then waited for until the API server serves them."""
    query: dict[str, str | int | bool] = {"fieldManager": FIELD_MANAGER, "force": True}
    await client.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        query=query,
        body=namespace_manifest(namespace),
        content_type=APPLY,
    )
    names = [kind.crd_name for kind in KINDS]
    await asyncio.gather(
        *(
            client.request(
                "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{c['metadata']['name']}",
                query=query,
                body=c,
                content_type=APPLY,
            )
            for c in (crd(kind) for kind in KINDS)
        )
    )
    async with asyncio.timeout(timeout):
        for name in names:
            attempt = 0
            while not _established(
                await client.request(
                    "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                )
            ):
                await asyncio.sleep(ESTABLISHING.delay(attempt))
                attempt += 1


def _established(obj: Object) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


async def connect(kubeconfig: Path, context: str | None, timeout: float) -> ClusterClient:
    """The management cluster's client; a kubeconfig we cannot use is StoreUnavailable."""
    try:
        config = load_file(kubeconfig, context)
    except KubeconfigError as e:
        raise StoreUnavailable(f"the hub's store cannot use its kubeconfig: {e}") from None
    try:
        return await ClusterClient.connect(config.document, timeout=timeout)
    except ClusterError as e:
        raise unavailable(config.server, e, at_start=True) from e


class Backend:
    """The loop thread, the client and the mirror of one store namespace."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        *,
        context: str | None,
        timed: Callable[[float], None] | None,
        timeout: float,
        identity: str,
    ) -> None:
        """`identity` signs every object this store writes (resources.WRITER)."""
        self.namespace = namespace
        self.timeout = timeout
        self.identity = identity
        self._others: list[Callable[[Object], None]] = []
        self._timed = timed or _untimed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"kube-store {namespace}", daemon=True
        )
        self._thread.start()
        self._background: set[asyncio.Task[None]] = set()
        self.client: ClusterClient | None = None
        self.mirror: Mirror | None = None
        try:
            self.run(self._start(kubeconfig, context), timeout=timeout * START_TIMEOUTS)
        except BaseException:
            self.close()
            raise

    @property
    def server(self) -> str:
        return self.client.server if self.client is not None else "the management cluster"

    async def _start(self, kubeconfig: Path, context: str | None) -> None:
        self.client = await connect(kubeconfig, context, self.timeout)
        try:
            await install_with(self.client, self.namespace, self.timeout)
        except (ClusterError, TimeoutError) as e:
            raise unavailable(self.server, e, at_start=True) from e
        self.mirror = Mirror(self.client, self.namespace, on_change=self._changed)
        await self.mirror.start()
        if not await self.mirror.cache.wait_for(self.mirror.listed, self.timeout):
            problem = self.mirror.cache.last_error or "its objects were not listed in time"
            raise unavailable(self.server, Unreachable(problem), at_start=True)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                self.run(self._stop(), timeout=self.timeout)
            except FlotillaError:
                log.warning("the store's watches did not stop in time")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout)
        if not self._loop.is_running():
            self._loop.close()

    async def _stop(self) -> None:
        """Background work gets a bounded while to finish (what it leaves is invisible and
        only takes room), then the watches and the client go."""
        tasks = list(self._background)
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout / 2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.mirror is not None:
            await self.mirror.stop()
        if self.client is not None:
            await self.client.close()
            # TLS connections finish closing on the loop's next turns (aiohttp's advice for
            # a graceful close); a loop stopped before then leaks their sockets.
            await asyncio.sleep(CLOSE_GRACE)

    # ------------------------------------------------------------------ calls from the hub

    def run(self, work: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run `work` on the store's loop and wait for it, bounded."""
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout if timeout is not None else self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise unavailable(self.server, Unreachable("no answer within the timeout")) from None

    def write(self, work: Callable[[], Awaitable[T]]) -> T:
        """One write of the hub (a state transition): run, timed when it committed."""
        started = time.perf_counter()

        async def guarded() -> T:
            try:
                return await work()
            except (Unreachable, Unauthorized, Forbidden, TimeoutError) as e:
                raise unavailable(self.server, e) from e

        result = self.run(guarded())
        self._timed(time.perf_counter() - started)
        return result

    def read(self, look: Callable[[Mirror], T]) -> T:
        """`look` at the mirror, on the store's loop (the mirror is not thread-safe): a
        callback rather than a task, since a read is asked on every watch event."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def looked() -> None:
            try:
                future.set_result(look(self.view))
            except BaseException as e:  # handed to the reader, raised there
                future.set_exception(e)

        self._loop.call_soon_threadsafe(looked)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            raise unavailable(self.server, Unreachable("no answer within the timeout")) from None

    def others(self, told: Callable[[Object], None]) -> None:
        """Tell `told` of every object the watch brings that another hub wrote, on the
        store's loop (so `told` must only hand it on, thread-safely)."""
        self._others.append(told)

    def _changed(self, obj: Object) -> None:
        """Pass on what others wrote, and every deletion: a deleted object comes as its
        last state, which may be this hub's own write though another hub deleted it (a
        `delete` sent here marks the application, and its owner removes it)."""
        meta = obj.get("metadata") or {}
        kind, namespace, name = str(obj.get("kind")), meta.get("namespace"), meta.get("name", "")
        gone = self.view.cache.get(kind, namespace, name) is None
        if writer_of(obj) == self.identity and not gone:
            return
        for told in self._others:
            told(obj)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Background work on the store's loop (cleanup, pruning); a failure is logged,
        never lost, and never reaches the write that asked for it."""
        task = self._loop.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if task.cancelled() or (error := task.exception()) is None:
            return
        if isinstance(error, ClusterError | FlotillaError):
            log.warning("store: %s did not finish: %s", task.get_name(), error)
        else:
            log.error("store: %s died", task.get_name(), exc_info=error)

    # ------------------------------------------------------------------ on the loop

    @property
    def view(self) -> Mirror:
        assert self.mirror is not None, "the store has started"
        return self.mirror

    async def send(self, method: str, path: str, *, what: str, body: Any = None) -> Object:
        """One request of a write; a refusal names the object `what`."""
        assert self.client is not None, "the store has started"
        try:
            answer: Object = await self.client.request(method, path, body=body)
        except ApiError as e:
            if isinstance(e, Conflict | NotFound):
                raise
            if e.status == 413 or "too large" in str(e).lower():
                raise StoreRefused(f"{what}: too large for the hub's store") from e
            if e.status >= 500 or e.status == 429:
                raise Unreachable(f"{self.server}: {e}") from e
            raise StoreRefused(f"{what}: the hub's store refused it ({e.status} {e.reason})") from e
        return answer

    async def create(self, obj: Object) -> Object:
        """POST; Conflict (clusters.errors) when an object of that name exists."""
        metadata = obj["metadata"]
        what = f"{obj['kind']} {metadata.get('name') or metadata.get('generateName', '')}"
        path = path_of(self.namespace, obj["kind"])
        created = await self.send("POST", path, what=what, body=signed(obj, self.identity))
        self.view.observe(created)
        return created

    async def update(self, kind: str, name: str, mutate: Mutation) -> Object | None:
        """Read-modify-write of one object: `mutate` gets a copy of the object as last seen
        (None: absent) and returns it changed (None: delete it); the write carries the
        resourceVersion it was made from, and a lost race starts over from fresh state."""
        current = self.view.get(kind, name)
        what = f"{kind} {name}"
        for _ in range(ATTEMPTS):
            wanted = mutate(copy_of(current))
            try:
                if wanted is None:
                    if current is not None:
                        await self._delete(kind, name, resource_version(current), what)
                    return None
                if current is None:
                    return await self.create(wanted)
                if wanted == current:
                    return current
                wanted.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                    "resourceVersion"
                ]
                written = await self.send(
                    "PUT",
                    path_of(self.namespace, kind, name),
                    what=what,
                    body=signed(wanted, self.identity),
                )
                self.view.observe(written)
                return written
            except (Conflict, NotFound):
                current = await self.fresh(kind, name)
        raise StoreUnavailable(
            f"the hub's store: {what} kept changing under this write ({ATTEMPTS} attempts); "
            "nothing of this change was kept"
        )

    async def fresh(self, kind: str, name: str) -> Object | None:
        """The object as the server has it now (after a lost race)."""
        try:
            obj = await self.send("GET", path_of(self.namespace, kind, name), what=f"{kind} {name}")
        except NotFound:
            return None
        self.view.observe(obj)
        return obj

    async def delete(self, kind: str, name: str, version: int | None = None) -> bool:
        """Delete, only at `version` when given; False when it changed since (or is gone)."""
        try:
            await self._delete(kind, name, version, f"{kind} {name}")
        except Conflict:
            return False
        except NotFound:
            self.view.forget(kind, name, version or 0)
            return False
        return True

    async def _delete(self, kind: str, name: str, version: int | None, what: str) -> None:
        body: Object = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if version is not None:
            body["preconditions"] = {"resourceVersion": str(version)}
        known = self.view.get(kind, name)
        answer = await self.send(
            "DELETE", path_of(self.namespace, kind, name), what=what, body=body
        )
        # The answer is the object or a Status; the tombstone must cover every version of
        # the object this store may still hear of.
        gone = max(
            resource_version(answer) if answer.get("kind") == kind else 0,
            resource_version(known) if known is not None else 0,
            version or 0,
        )
        self.view.forget(kind, name, gone)

    async def delete_all(self, objects: list[Object]) -> None:
        """Background cleanup: each at the version seen, so that nothing written since goes."""
        for obj in objects:
            await self.delete(str(obj["kind"]), obj["metadata"]["name"], resource_version(obj))


def _untimed(seconds: float) -> None:
    """A store that nobody measures (tests, tools)."""
