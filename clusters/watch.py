"""A per-cluster cache of the objects we care about, kept current by watches.

Status reads (the status tree, the canary's readiness gate, `flotilla status --watch`)
would otherwise poll every API server for every object; with many clusters that is the
load that gets a client throttled. Instead each watched kind is listed once and then
watched from that resourceVersion, with bookmarks so a quiet watch can resume without a
re-list; a 410 Gone (our resourceVersion is older than the server's window) re-lists.

A cluster may vanish for minutes. The cache then keeps the last objects it saw and says
so (`synced` False, `last_error`, `last_seen`), reconnecting with exponential backoff
and resuming the watch where it stopped. Waiters (`wait_for`) are woken by every change,
or by every change of the namespaces they name, never by a timer, so the engine waits
for health without asking the API server.

One stream per kind (per namespace, if the cache is limited to namespaces) holds one
connection of the cluster's client for as long as the cache runs: keep the kinds few
and prefer one cluster-wide stream with a label selector.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from clusters.errors import ClusterError, Gone, api_error, reworded
from clusters.health import Health, assess
from clusters.resources import Backoff, Connection, ResourceClient, ResourceType

logger = logging.getLogger(__name__)

# Server-side watch timeout. A watch that ends cleanly is resumed at once, so this only
# bounds how long a connection lives; API servers cap it themselves (30-60 min).
WATCH_TIMEOUT = 300
# A watch with no byte for this long is presumed dead (a silently dropped connection
# never says so). Bookmarks arrive about once a minute, and the server ends the watch
# at WATCH_TIMEOUT, so a live stream always speaks sooner.
READ_TIMEOUT = WATCH_TIMEOUT + 30
# Items per list page: bounds the memory of one answer on clusters with many objects.
LIST_PAGE = 500
# Reconnecting: quick at first (a blip), then no more than twice a minute (an outage).
RECONNECT = Backoff(first=0.5, factor=2.0, cap=30.0)

Key = tuple[str, str]  # (namespace or "" for cluster-scoped, name)
Object = dict[str, Any]


@dataclass
class _Stream:
    """One list+watch: a kind in one namespace (or cluster-wide), and how it fares."""

    kind: str
    namespace: str | None
    resource_version: str | None = None
    synced: bool = False
    error: str | None = None
    last_seen: float | None = None


@dataclass
class _Kind:
    api_version: str
    kind: str
    objects: dict[Key, Object] = field(default_factory=dict)
    judged: dict[Key, Health] = field(default_factory=dict)
    """`assess` of objects as last seen, dropped whenever the object changes."""
    streams: list[_Stream] = field(default_factory=list)
    resolved: bool = False
    error: str | None = None


class ClusterCache:
    """Objects of a few kinds on one cluster, as last seen by list+watch.

    `kinds` are (apiVersion, kind) pairs; reads name a kind by its `kind` alone, so two
    entries may not share one. `label_selector` (Kubernetes syntax) limits what is
    listed and watched; `namespaces` limits namespaced kinds to those namespaces.
    `on_change` is told of every object an event or a re-list brought, changed or
    deleted, on the cache's loop, for whoever keeps an index or reacts to others' writes.
    `on_moved` is told whenever the version moves, at once: for whoever only needs to
    know that something changed, a task woken at every event costs the loop more.
    """

    def __init__(
        self,
        connection: Connection,
        kinds: Sequence[tuple[str, str]],
        *,
        label_selector: str | None = None,
        namespaces: Collection[str] | None = None,
        backoff: Backoff = RECONNECT,
        on_change: Callable[[Object], None] | None = None,
        on_moved: Callable[[], None] | None = None,
    ) -> None:
        # One attempt per call: the reconnect loop below is the retry, with its own backoff.
        self._rc = ResourceClient(connection, attempts=1)
        self._on_change = on_change or _unheard
        self._on_moved = on_moved or _untold
        self._label_selector = label_selector
        self._namespaces = sorted(namespaces) if namespaces is not None else None
        self._backoff = backoff
        self._kinds: dict[str, _Kind] = {}
        for api_version, kind in kinds:
            if kind in self._kinds:
                raise ValueError(f"kind {kind} is listed twice; one apiVersion per kind")
            self._kinds[kind] = _Kind(api_version, kind)
        self._tasks: builtins.list[asyncio.Task[None]] = []
        self._died: asyncio.Future[asyncio.Task[None]] | None = None
        # Made by the first waiter after a change: most changes find nobody waiting.
        self._changed: asyncio.Event | None = None
        self._version = 0
        # The version at which the cache's state (what is listed, synced or failing) last
        # changed, and at which each namespace's objects did ("" for cluster-scoped ones).
        self._state_moved = 0
        self._moved: dict[str, int] = {}
        # Waiters for a change of a namespace's objects (or of the state), by namespace.
        self._waiting: dict[str | None, set[asyncio.Future[None]]] = {}
        self._last_seen: float | None = None
        self._synced = (-1, False)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the background tasks; returns at once, before the first list."""
        if self._tasks:
            return
        self._died = None  # a restart leaves the tasks that died behind
        for state in self._kinds.values():
            self._spawn(state, self._run_kind(state), f"discover {state.kind}")

    async def stop(self) -> None:
        """Stop every watch; the cache keeps what it had, marked not synced."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in self._kinds.values():
            for stream in state.streams:
                stream.synced = False
        self._notify()

    async def __aenter__(self) -> ClusterCache:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def died(self) -> asyncio.Task[None]:
        """Until a task of the cache dies of an error its own retries do not cover (a
        bug, logged and shown in `last_error`): that task. A restart forgets it."""
        return await asyncio.shield(self._death())

    def _death(self) -> asyncio.Future[asyncio.Task[None]]:
        """The future `died` awaits, made by whichever comes first: a waiter or a death."""
        if self._died is None:
            self._died = asyncio.get_running_loop().create_future()
        return self._died

    # ------------------------------------------------------------------ reads

    @property
    def synced(self) -> bool:
        """Every kind listed, and every watch connected right now. Worked out again only
        when the cache's state moved (every change of a stream's state moves it): `status`
        asks it of every cluster, which walked a thousand caches' streams, and each health
        wait at every event of its cluster."""
        if self._synced[0] != self._state_moved:
            self._synced = (
                self._state_moved,
                all(
                    state.resolved and all(stream.synced for stream in state.streams)
                    for state in self._kinds.values()
                ),
            )
        return self._synced[1]

    @property
    def last_error(self) -> str | None:
        """What currently keeps the cache from being synced, if anything failed."""
        for state in self._kinds.values():
            for error in (state.error, *(s.error for s in state.streams)):
                if error:
                    return error
        return None

    @property
    def last_seen(self) -> float | None:
        """When (epoch seconds) the cluster last answered any of our lists or watches.
        Kept as they answer, not gathered from the streams: the prober asks it of every
        cluster every interval, and walking a thousand caches' streams was a tenth of an
        idle hub."""
        return self._last_seen

    @property
    def version(self) -> int:
        """Increases on every change of objects or sync state: `wait_for` a new one."""
        return self._version

    def moved(self, namespaces: Iterable[str]) -> tuple[int, ...]:
        """The version at which the cache's state last changed, then, for each of
        `namespaces` ("" for cluster-scoped objects), the version at which an object of
        it last changed: equal for as long as nothing a reader of those namespaces sees
        moved. `version` moves with every namespace; a status tree kept by this (its
        releases' namespaces) survives changes elsewhere in the cluster, such as another
        application's rollout."""
        moved = self._moved
        return (self._state_moved, *(moved.get(namespace, 0) for namespace in namespaces))

    def watches(self, api_version: str, kind: str) -> bool:
        """Whether `kind` of `api_version`'s API group is one of the cache's kinds. Any
        version of the group will do (they serve the same objects); another group's kind
        of the same name will not, though `get` and `list` would answer for it."""
        state = self._kinds.get(kind)
        return state is not None and _group(state.api_version) == _group(api_version)

    def listed(self, kind: str) -> bool:
        """Every stream of `kind` has listed at least once. Only then does `get` answering
        None mean the object did not exist when last seen, rather than not looked for yet."""
        state = self._state(kind)
        return state.resolved and all(stream.last_seen is not None for stream in state.streams)

    def get(self, kind: str, namespace: str | None, name: str) -> Object | None:
        """One object as last seen, or None; `namespace` None for cluster-scoped kinds."""
        return self._state(kind).objects.get((namespace or "", name))

    def judged(self, kind: str, namespace: str | None, name: str) -> tuple[Object | None, Health]:
        """One object as last seen (`get`) with its `assess` (MISSING if the cache has
        none), judged once per version of it: `status` asks it of every object of every
        cluster on every call, and at a thousand clusters judging them anew was a tenth of
        it."""
        state = self._state(kind)
        key = (namespace or "", name)
        obj = state.objects.get(key)
        health = state.judged.get(key)
        if health is None:
            health = assess(obj)
            if obj is not None:
                state.judged[key] = health
        return obj, health

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: Mapping[str, str] | None = None,
    ) -> builtins.list[Object]:
        """Objects of `kind`, optionally in one namespace and carrying all `selector` labels."""
        wanted = (selector or {}).items()
        return [
            obj
            for (ns, _), obj in self._state(kind).objects.items()
            if (namespace is None or ns == namespace)
            and wanted <= ((obj.get("metadata") or {}).get("labels") or {}).items()
        ]

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        namespaces: Collection[str] | None = None,
    ) -> bool:
        """Wait until `predicate()` holds, re-checking on every change; False on timeout.

        With `namespaces` ("" for cluster-scoped objects), only a change of their objects
        or of the cache's state re-checks it: a release's wait on a cluster where other
        releases roll out would otherwise judge its objects again at each of their events.
        """
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if namespaces is None:
                        if self._changed is None:
                            self._changed = asyncio.Event()
                        await self._changed.wait()
                    else:
                        await self._moved_in(namespaces)
        except TimeoutError:
            return predicate()
        return True

    # ------------------------------------------------------------------ background

    def _state(self, kind: str) -> _Kind:
        try:
            return self._kinds[kind]
        except KeyError:
            raise KeyError(f"{kind} is not watched by this cache") from None

    def _notify(self, moved: Collection[str] = ()) -> None:
        """Wake the waiters: objects of the namespaces `moved` changed or, with none given,
        the cache's state did."""
        self._version += 1
        waiting = self._waiting
        woken: Iterable[set[asyncio.Future[None]]] = ()
        if moved:
            for namespace in moved:
                self._moved[namespace] = self._version
            if waiting:
                woken = [waiting.pop(ns) for ns in moved if ns in waiting]
        else:
            self._state_moved = self._version
            woken, self._waiting = waiting.values(), {}
        for futures in woken:
            for future in futures:
                if not future.done():
                    future.set_result(None)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        self._on_moved()

    async def _moved_in(self, namespaces: Collection[str]) -> None:
        """Until the objects of one of `namespaces` or the cache's state change."""
        future = asyncio.get_running_loop().create_future()
        keys = namespaces or (None,)  # None: no namespace, only a change of the state
        for namespace in keys:
            self._waiting.setdefault(namespace, set()).add(future)
        try:
            await future
        finally:
            for namespace in keys:
                if (futures := self._waiting.get(namespace)) is not None:
                    futures.discard(future)
                    if not futures:
                        del self._waiting[namespace]

    def _spawn(self, state: _Kind, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(partial(self._on_task_done, state))
        self._tasks.append(task)

    def _on_task_done(self, state: _Kind, task: asyncio.Task[None]) -> None:
        """Our tasks end by cancellation or (discovery) by handing over to the streams;
        an exception is a bug. It must not die quietly: log it and show it."""
        if task.cancelled() or (error := task.exception()) is None:
            return
        logger.error("%s: task died", task.get_name(), exc_info=error)
        state.error = f"{task.get_name()} stopped: {type(error).__name__}: {error}"
        for stream in state.streams:
            stream.synced = False
        if not (death := self._death()).done():
            death.set_result(task)
        self._notify()

    async def _run_kind(self, state: _Kind) -> None:
        """Find the kind (retrying: its CRD may come later), then run its streams."""
        failures = 0
        while True:
            try:
                resource = await self._rc.resolve(state.api_version, state.kind)
                break
            except ClusterError as e:
                state.error = str(e)
                self._notify()
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1
        state.error = None
        scopes: Sequence[str | None] = (
            self._namespaces if resource.namespaced and self._namespaces is not None else [None]
        )
        state.streams = [_Stream(state.kind, namespace) for namespace in scopes]
        state.resolved = True
        self._notify()  # a kind with no stream to run (no namespace given) is synced now
        for stream in state.streams:
            self._spawn(state, self._run_stream(state, resource, stream), f"watch {_where(stream)}")

    async def _run_stream(self, state: _Kind, resource: ResourceType, stream: _Stream) -> None:
        """List, then watch for ever; re-list on 410, back off and resume on failures."""
        failures = 0
        while True:
            try:
                if stream.resource_version is None:
                    await self._list(state, resource, stream)
                while True:
                    await self._watch(state, resource, stream)
                    failures = 0
            except Gone:
                logger.info("%s: resourceVersion expired, re-listing", _where(stream))
                stream.resource_version = None
            except (ClusterError, aiohttp.ClientError, TimeoutError, ValueError) as e:
                error = _describe(e, stream)
                # An outage repeats the same failure on every retry: say it once.
                level = logging.DEBUG if error == stream.error else logging.WARNING
                logger.log(level, "%s (retrying)", error)
                stream.synced, stream.error = False, error
                self._notify()
                await asyncio.sleep(self._backoff.delay(failures))
                failures += 1

    def _query(self, **extra: str | int | bool) -> dict[str, str | int | bool]:
        query: dict[str, str | int | bool] = dict(extra)
        if self._label_selector:
            query["labelSelector"] = self._label_selector
        return query

    async def _list(self, state: _Kind, resource: ResourceType, stream: _Stream) -> None:
        path = resource.path(stream.namespace)
        items: builtins.list[Object] = []
        page: dict[str, str | int | bool] = self._query(limit=LIST_PAGE)
        while True:
            answer = await self._rc.call("GET", path, what=f"list {_where(stream)}", query=page)
            items.extend(answer.get("items") or ())
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                break
            page = self._query(limit=LIST_PAGE, **{"continue": token})
        fresh = {}
        for item in items:
            obj = _normalized(item, resource)
            fresh[_key(obj)] = obj
        moved: set[str] = set()
        # The list is the whole truth for this stream's scope: what it lacks is gone.
        for key in [k for k in state.objects if k not in fresh]:
            if stream.namespace is None or key[0] == stream.namespace:
                self._on_change(state.objects.pop(key))
                moved.add(key[0])
        for key, obj in fresh.items():
            held = state.objects.get(key)
            if held is None or _version(held) != _version(obj):
                self._on_change(obj)
                moved.add(key[0])
        state.objects.update(fresh)
        state.judged.clear()  # a list is rare: no need to tell which of them changed
        stream.resource_version = str(answer["metadata"]["resourceVersion"])
        self._mark_alive(stream, moved)

    async def _watch(self, state: _Kind, resource: ResourceType, stream: _Stream) -> None:
        """One watch connection, until the server ends it; raises on failures and on 410."""
        query = self._query(
            watch=True,
            resourceVersion=stream.resource_version or "",
            allowWatchBookmarks=True,
            timeoutSeconds=WATCH_TIMEOUT,
        )
        try:
            async with self._rc.client.stream(
                resource.path(stream.namespace), query=query, read_timeout=READ_TIMEOUT
            ) as response:
                self._mark_alive(stream)
                async for line in response.content:
                    if line.strip():
                        # orjson: every event of every watched kind is parsed here, and
                        # with many clusters the stdlib parser was the hub's largest cost.
                        self._apply_event(state, resource, stream, orjson.loads(line))
        except ClusterError as e:
            raise reworded(e, f"watch {_where(stream)}: {e}") from e

    def _apply_event(
        self, state: _Kind, resource: ResourceType, stream: _Stream, event: Mapping[str, Any]
    ) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 500)
            raise api_error(code, str(obj.get("message", "")), str(obj.get("reason", "")))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        moved: tuple[str, ...] = ()
        if kind in ("ADDED", "MODIFIED"):
            normalized = _normalized(obj, resource)
            state.objects[key := _key(normalized)] = normalized
            state.judged.pop(key, None)
            self._on_change(normalized)
            moved = (key[0],)
        elif kind == "DELETED":
            state.objects.pop(key := _key(obj), None)
            state.judged.pop(key, None)
            self._on_change(obj)
            moved = (key[0],)
        if version:
            stream.resource_version = str(version)
        self._mark_alive(stream, moved)

    def _mark_alive(self, stream: _Stream, moved: Collection[str] = ()) -> None:
        """The stream answered, with changes to the objects of the namespaces `moved`.
        Waiters and listeners hear of it only when an object or the stream's state
        changed: a bookmark or a resumed watch changes neither, and a thousand idle
        clusters' watches hear a bookmark 150 times a second, each of which woke the
        drift keeper and the status keeper for nothing."""
        was_fine = stream.synced and stream.error is None
        stream.last_seen = self._last_seen = time.time()
        stream.synced = True
        stream.error = None
        if not was_fine:
            self._notify()
        if moved:
            self._notify(moved)


def _version(obj: Object) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def _unheard(obj: Object) -> None:
    """A cache nobody asked to be told of changes."""


def _untold() -> None:
    """A cache nobody asked to be told that its version moved."""


def _normalized(obj: Object, resource: ResourceType) -> Object:
    """List items come without apiVersion and kind, which health rules need; managed
    fields are bulky and only matter to the API server."""
    obj["apiVersion"] = resource.api_version
    obj["kind"] = resource.kind
    (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name", "")))


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _where(stream: _Stream) -> str:
    return f"{stream.kind} in {stream.namespace}" if stream.namespace else stream.kind


def _describe(error: BaseException, stream: _Stream) -> str:
    """One line about a failure. Ours already say what they were about; transport
    errors are named by type only (see clusters.errors)."""
    if isinstance(error, ClusterError):
        return str(error)
    if isinstance(error, TimeoutError):
        problem = "no event for too long; reconnecting"
    elif isinstance(error, ValueError):
        problem = "the server sent an unreadable event"
    else:
        problem = f"connection lost ({type(error).__name__})"
    return f"watch {_where(stream)}: {problem}"
