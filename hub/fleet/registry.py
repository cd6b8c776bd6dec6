"""The member-cluster registry: join, label, rename, detach, and keep health current.

Health is kept by a background prober, never computed on request, so `cluster list`
answers from the store at once even when a member cluster is dead. One ClusterClient per
cluster is created on first use and reused by everything in the hub that talks to it,
its watch cache (`observer`) included; detach and rename take the cache along.
A single hub watches every registered cluster; a replica sharing a Kubernetes store with
others (`watch_all=False`) leaves which clusters to watch to its shards
(hub.service.replicas), and probes every cluster all the same.

What each cluster serves (its version and API versions, `clusters.discovery`) is kept here
too, in memory only: it is a cache of the cluster's own truth, discovered at join and at
start, refreshed by the prober every `DISCOVERY_INTERVAL` (two 304s while nothing changed),
and what every render for the cluster is given. A render that finds it unknown discovers
it there and then, within a bound.

The prober is the supervised task `probe` and is critical: without it every health in
`cluster list` silently goes stale, so if it keeps dying the hub stops (hub.tasks). One
cluster whose probe fails in an unforeseen way is that cluster's problem, not the
prober's: it shows as that cluster's health and reason, and the others are probed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clusters import kubeconfig as kc
from clusters.client import ClusterClient, RequestStats
from clusters.discovery import Capabilities, Discovery, discover
from clusters.errors import ClusterError, Unauthorized, Unreachable, reworded
from clusters.probe import probe, readiness
from hub.errors import ClusterUnavailable, Conflict, InvalidInput, NotFound
from hub.fleet.observer import Observer, WatchHealth
from hub.model.records import ClusterRecord
from hub.model.settings import DEFAULTS, Settings
from hub.redaction import Scrubber
from hub.state.interface import ClusterStore
from hub.tasks import Supervisor, TaskState
from placement.errors import PlacementError
from placement.names import validate_dns_label
from placement.selectors import validate_label_key, validate_label_value

log = logging.getLogger(__name__)
PROBE_TASK = "probe"
# Seconds between discoveries of a healthy cluster: a CRD installed there reaches renders
# within this. Discovery rarely changes, and a refresh is one conditional GET of `/apis`
# (`clusters.discovery`), but it is no health signal: at a thousand idle clusters each
# such refresh per minute is a seventeenth of a request a millisecond.
DISCOVERY_INTERVAL = 60.0
# Seconds a cluster whose watches keep answering goes without a probe (`_heard_from`):
# as often as its discovery is refreshed. What an open watch cannot show (a credential
# revoked since it connected, a cut that drops packets silently) is found within this.
WATCH_QUIET = 60.0
# Seconds a watch cache whose every watch is connected may be silent before its cluster is
# probed at every interval again. The API server sends each watch a bookmark about once a
# minute, and a cache's watches start together, so their bookmarks come in bursts a
# minute apart: when this was 30 s, every such cluster was probed at every interval for
# half of each minute (measured: a probe every 9 s instead of every 30).
BOOKMARK_GAP = 90.0


class Registry:
    def __init__(
        self,
        store: ClusterStore,
        scrubber: Scrubber,
        *,
        temp_dir: Path,
        supervisor: Supervisor,
        settings: Settings = DEFAULTS,
        watch_all: bool = True,
    ) -> None:
        """`watch_all`: start, join and sync keep a watch cache of every registered
        cluster; without it, only what the observer is told to watch is watched."""
        self.store = store
        self.scrubber = scrubber
        self.temp_dir = temp_dir
        self.settings = settings
        self.supervisor = supervisor
        self.watch_all = watch_all
        self.observer = Observer(self.client, supervisor=supervisor)
        self._clients: dict[str, ClusterClient] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._next_probe: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._probe_seconds: dict[str, float] = {}
        self._probed: dict[str, float] = {}  # when (loop time) this hub last probed each
        self._discoveries: dict[str, Discovery] = {}
        self._discovering: dict[str, asyncio.Task[Discovery]] = {}
        self._next_discovery: dict[str, float] = {}
        # Every change to a cluster goes through this class, so it keeps the records: a
        # store read parses every kubeconfig (certificates and keys), which with 64
        # clusters was most of a status call and a tenth of the hub's CPU in a deploy.
        self._records = {record.name: record for record in store.clusters()}
        for record in self._records.values():
            self._scrub(record)

    def _scrub(self, record: ClusterRecord) -> None:
        """Keep the cluster's credentials (kubeconfig, Prometheus) out of every log line."""
        self.scrubber.add(kc.secrets_of(record.kubeconfig))
        self.scrubber.add(prometheus_secrets(record.prometheus))

    def clusters(self) -> list[ClusterRecord]:
        """Every registered cluster, by name, as the store has it (read from memory)."""
        return [self._records[name] for name in sorted(self._records)]

    def record(self, name: str) -> ClusterRecord | None:
        """The registered cluster called `name` (read from memory), None if none is."""
        return self._records.get(name)

    def _reload(self, name: str) -> ClusterRecord:
        self._records[name] = self.store.cluster(name)
        return self._records[name]

    def start(self) -> None:
        """Start the prober and (`watch_all`) the watch cache of every registered cluster,
        supervised."""
        self.supervisor.spawn(PROBE_TASK, self.probe_forever, critical=True)
        if self.watch_all:
            self.observe()

    def observe(self) -> None:
        """Start the watch cache of every registered cluster (in the background)."""
        for name in self._records:
            self.observer.watch(name)

    def watch_health(self, name: str) -> WatchHealth:
        return self.observer.health(name)

    def last_seen(self, record: ClusterRecord) -> float | None:
        """When (epoch seconds) the cluster last answered: its prober or its watches, which
        may have heard from a dying cluster after its last probe."""
        seen = [t for t in (record.last_seen, self.observer.last_seen(record.name)) if t]
        return max(seen, default=None)

    def probe_seconds(self, name: str) -> float | None:
        """How long the last probe of `name` took (None before its first one)."""
        return self._probe_seconds.get(name)

    def known_capabilities(self, name: str) -> Capabilities | None:
        """What the cluster was last discovered to serve (None before its first discovery)."""
        known = self._discoveries.get(name)
        return known.capabilities if known else None

    async def capabilities(self, name: str) -> Capabilities:
        """What to render for `name` with: as last discovered, or discovered now if never
        (the first renders after a start or join), within the join timeout. Raises the
        ClusterError of why it cannot be asked, naming the cluster: `Unreachable` (no answer
        in time included) is what the engine waits out, as for any other request."""
        known = self.known_capabilities(name)
        if known is not None:
            return known
        try:
            async with asyncio.timeout(self.settings.join_timeout):
                return (await self._discover(name)).capabilities
        except TimeoutError:
            raise Unreachable(
                f"cluster {name}: no answer to discovery within "
                f"{self.settings.join_timeout:.0f}s, so nothing renders for it"
            ) from None
        except ClusterError as e:
            raise reworded(e, f"cluster {name}: cannot discover what it serves: {e}") from e

    def _discover(self, name: str) -> asyncio.Future[Discovery]:
        """Discover `name` again, once at a time however many ask: the callers share the
        one discovery in flight, and one caller's timeout does not cancel the others'."""
        task = self._discovering.get(name)
        if task is None:
            task = asyncio.create_task(self._rediscover(name), name=f"discover {name}")
            self._discovering[name] = task
            task.add_done_callback(lambda done: self._discovered(name, done))
        return asyncio.shield(task)

    async def _rediscover(self, name: str) -> Discovery:
        client = await self.client(name)
        found = await discover(client, self._discoveries.get(name))
        if name in self._records:  # not detached meanwhile
            self._discoveries[name] = found
        return found

    def _discovered(self, name: str, task: asyncio.Task[Discovery]) -> None:
        if self._discovering.get(name) is task:
            del self._discovering[name]
        if task.cancelled() or (error := task.exception()) is None:
            return
        if isinstance(error, ClusterError):
            log.warning("discovery of cluster %s failed: %s", name, error, extra={"cluster": name})
        else:
            log.error(
                "discovery of cluster %s failed", name, exc_info=error, extra={"cluster": name}
            )

    def request_stats(self) -> dict[str, RequestStats]:
        """What each cluster's client has sent, by cluster; none before its first use."""
        return {name: client.stats for name, client in self._clients.items()}

    def prober_state(self) -> TaskState | None:
        """The prober's task as the supervisor knows it (None before `start`)."""
        return self.supervisor.state(PROBE_TASK)

    async def close(self) -> None:
        """Stop the prober and every watch, and close every client."""
        await self.supervisor.cancel(PROBE_TASK)
        for task in list(self._discovering.values()):
            task.cancel()
        await self.observer.close()
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def client(self, name: str) -> ClusterClient:
        """The shared client of a registered cluster (created on first use).

        Callers racing for a new cluster's client (the prober, the observer, a deploy)
        wait for one another: a second client would be made and never closed."""
        async with self._connecting.setdefault(name, asyncio.Lock()):
            if name not in self._clients:
                record = self.store.cluster(name)
                self._clients[name] = await ClusterClient.connect(
                    record.kubeconfig,
                    temp_dir=self.temp_dir,
                    max_in_flight=self.settings.in_flight_per_cluster,
                )
        return self._clients[name]

    async def join(
        self,
        document: Mapping[str, Any],
        *,
        source: str,
        name: str | None,
        labels: dict[str, str],
        prometheus: Mapping[str, str] | None = None,
    ) -> ClusterRecord:
        """Contact the cluster first, store it only when it answered as expected."""
        try:
            config = kc.from_dict(document, source=source)
        except kc.KubeconfigError as e:
            raise InvalidInput(str(e)) from None
        self.scrubber.add(kc.secrets_of(config.document))
        access = check_prometheus(prometheus) if prometheus else {}
        self.scrubber.add(prometheus_secrets(access))
        name = name or config.context
        check_name(name)
        check_labels(labels)
        if name in self._records:
            raise InvalidInput(f"cluster {name!r} is already registered (pick another --name)")
        client = await _connect(config.document, self.settings)
        try:
            async with asyncio.timeout(self.settings.join_timeout):
                facts = await probe(client, config.namespace or "default")
        except TimeoutError:
            await client.close()
            raise ClusterUnavailable(
                f"{config.server}: no answer within {self.settings.join_timeout:.0f}s; "
                "nothing was stored"
            ) from None
        except ClusterError as e:
            await client.close()
            raise ClusterUnavailable(f"{e}; nothing was stored") from None
        if not facts.usable:
            await client.close()
            raise ClusterUnavailable(
                f"{config.server}: user {facts.user} may not create deployments, neither "
                f"cluster-wide nor in namespace {facts.namespace}; nothing was stored"
            )
        warnings = (
            [
                f"user {facts.user} cannot {', '.join(facts.missing)} cluster-wide; Flotilla "
                f"can deploy only where RBAC allows (namespace {facts.namespace})"
            ]
            if facts.missing
            else []
        )
        record = ClusterRecord(
            name=name,
            server=config.server,
            kubeconfig=config.document,
            credential=config.credential,
            labels=labels,
            version=facts.version,
            health="Healthy" if facts.ready else "NotReady",
            warnings=warnings,
            last_seen=time.time(),
            prometheus=access,
        )
        self.store.add_cluster(record)
        record = self._reload(name)
        self._clients[name] = client
        if self.watch_all:
            self.observer.watch(name)
        # Now rather than at the first render; a failure is logged, and that render asks.
        with contextlib.suppress(TimeoutError, ClusterError):
            async with asyncio.timeout(self.settings.probe_timeout):
                await self._discover(name)
        self._next_discovery[name] = asyncio.get_running_loop().time() + DISCOVERY_INTERVAL
        log.info(
            "joined cluster %s (%s, %s)",
            name,
            config.server,
            facts.version,
            extra={"cluster": name},
        )
        return record

    def label(self, name: str, add: dict[str, str], remove: list[str]) -> ClusterRecord:
        check_labels(add)
        labels = self.store.cluster(name).labels
        missing = [k for k in remove if k not in labels]
        if missing:
            raise NotFound(f"cluster {name!r} has no label {', '.join(missing)}")
        labels = {k: v for k, v in labels.items() if k not in remove} | add
        self.store.set_labels(name, labels)
        return self._reload(name)

    def set_prometheus(self, name: str, prometheus: Mapping[str, str]) -> ClusterRecord:
        """Register (or with an empty mapping, forget) the cluster's own Prometheus."""
        access = check_prometheus(prometheus) if prometheus else {}
        self.scrubber.add(prometheus_secrets(access))
        self.store.set_prometheus(name, access)
        return self._reload(name)

    async def rename(self, old: str, new: str) -> ClusterRecord:
        """The same cluster (same uid) under a new name: the store re-points its targets,
        inventory and canaries in one transaction, and its client, watch cache and probe
        schedule move along, so nothing reconnects or re-lists."""
        check_name(new)
        if new == old:
            return self.store.cluster(old)
        if new in self._records:
            raise Conflict(f"cluster {new!r} is already registered; pick another name")
        self.store.rename_cluster(old, new)
        self._records.pop(old, None)
        for table in (
            self._clients,
            self._connecting,
            self._next_probe,
            self._failures,
            self._probe_seconds,
            self._probed,
            self._discoveries,
            self._next_discovery,
        ):
            _move(table, old, new)
        record = self._reload(new)
        await self.observer.rename(old, new)
        log.info("cluster %s renamed to %s (uid %s)", old, new, record.uid, extra={"cluster": new})
        return record

    async def sync(self, name: str) -> None:
        """Take in what another hub sharing the store did to cluster `name`: joined (a
        record and probes here too, and with `watch_all` a watch cache), relabelled, or
        detached (forgotten here). A rename there is a detach of the old name and a join
        of the new one."""
        try:
            record = self.store.cluster(name)
        except NotFound:
            if name in self._records:
                await self._forget(name)
            return
        self._scrub(record)
        known = self._records.get(name)
        self._records[name] = record
        if known is None:
            if self.watch_all:
                self.observer.watch(name)
            log.info("cluster %s joined by another hub", name, extra={"cluster": name})

    async def detach(self, name: str) -> None:
        """Forget the cluster and every record naming it; its objects stay where they are.
        Whether it still holds applications is for the caller to ask first."""
        self.store.delete_cluster(name)
        await self._forget(name)

    async def _forget(self, name: str) -> None:
        self._records.pop(name, None)
        self._next_probe.pop(name, None)
        self._failures.pop(name, None)
        self._probe_seconds.pop(name, None)
        self._probed.pop(name, None)
        self._discoveries.pop(name, None)
        self._next_discovery.pop(name, None)
        await self.observer.forget(name)
        self._connecting.pop(name, None)
        client = self._clients.pop(name, None)
        if client is not None:
            await client.close()

    async def probe_forever(self) -> None:
        """Probe every due cluster concurrently; failing clusters back off. Times are the
        loop's clock (monotonic, and virtual in tests).

        A healthy cluster whose watch streams answered within the last probe interval is
        not asked: the streams have just proven it alive, and at a thousand clusters the
        probes would be most of what the hub sends. Only its discovery is refreshed when
        due. A cluster that dies goes quiet, and is probed one interval later; so is one
        this hub does not watch (a replica's cluster outside its shards): it is never
        heard from."""
        while True:
            now = asyncio.get_running_loop().time()
            due = [name for name in self._records if self._next_probe.get(name, 0) <= now]
            heard = {name for name in due if self._heard_from(name)}
            for name in heard:
                self._next_probe[name] = now + self.settings.probe_interval
            # Only the discoveries that are due: a task for each heard cluster every
            # interval, most of them returning at once, was a twentieth of an idle hub.
            rediscover = [n for n in heard if self._next_discovery.get(n, 0) <= now]
            await asyncio.gather(
                *(self.probe_one(name) for name in due if name not in heard),
                *(self._refresh_discovery(name) for name in rediscover),
            )
            await asyncio.sleep(min(1.0, self.settings.probe_interval))

    def _heard_from(self, name: str) -> bool:
        """Whether `name` need not be probed now: this hub probed it within WATCH_QUIET
        and found it healthy, and its watches have spoken since, within one probe interval
        or, while every one of them is connected, within BOOKMARK_GAP (the API server sends
        each watch a bookmark about once a minute).

        A cluster that goes down breaks its watches (the connection is reset), which the
        cache shows at once, so it is probed within an interval as before. What an open
        watch cannot show (a credential revoked since it connected, a cut that drops
        packets silently, /readyz failing) is found by the probe every cluster gets at
        least every WATCH_QUIET. At a thousand idle clusters, probes every interval had
        been most of what the hub sent and a quarter of its CPU."""
        now = asyncio.get_running_loop().time()
        if (
            self._records[name].health != "Healthy"
            or self._probed.get(name, -WATCH_QUIET) <= now - WATCH_QUIET
        ):
            return False
        # Asked of every cluster every interval: whether every watch is connected (worked
        # out anew whenever the cache changed) only when the streams have been quiet that
        # long.
        seen = self.observer.last_seen(name)
        if seen is None:
            return False
        silent = time.time() - seen
        if silent <= self.settings.probe_interval:
            return True
        cache = self.observer.cache(name)
        return silent <= BOOKMARK_GAP and cache is not None and cache.synced

    async def probe_one(self, name: str) -> None:
        health, reason, seen = "Healthy", "", True
        started = time.monotonic()
        try:
            client = await self.client(name)
            ready = await readiness(client, timeout=self.settings.probe_timeout)
            if not ready:
                health, reason = "NotReady", "/readyz is not ok"
        except NotFound:
            return  # detached while we were probing
        except Unauthorized as e:
            health, reason = "Unauthorized", str(e)
        except (Unreachable, ClusterError) as e:
            health, reason, seen = "Unreachable", str(e), False
        except Exception as e:  # unforeseen, and this cluster's alone: the others go on
            log.error("probe of cluster %s failed", name, exc_info=e, extra={"cluster": name})
            health, seen = "Unknown", False
            reason = f"probe failed unexpectedly ({type(e).__name__}); the hub's log has why"
        version = await self._refresh_discovery(name) if health == "Healthy" else None
        took = time.monotonic() - started
        try:
            self.store.record_probe(name, health=health, reason=reason, version=version, seen=seen)
            self._reload(name)
        except NotFound:
            return  # detached or renamed while we were probing
        self._probe_seconds[name] = took
        self._probed[name] = asyncio.get_running_loop().time()
        # Scheduled only once recorded: a prober restarted after dying here comes back to
        # this cluster at once.
        failures = 0 if health == "Healthy" else self._failures.get(name, 0) + 1
        self._failures[name] = failures
        delay = min(
            self.settings.probe_interval * (2 ** max(failures - 1, 0)),
            self.settings.probe_backoff_max,
        )
        self._next_probe[name] = asyncio.get_running_loop().time() + (
            self.settings.probe_interval if failures <= 1 else delay
        )

    async def _refresh_discovery(self, name: str) -> str | None:
        """Discover a healthy cluster again when due; its server version, for the store
        (an upgraded cluster shows its new version), or None when not asked or failed
        (logged: renders keep the capabilities last discovered)."""
        now = asyncio.get_running_loop().time()
        if self._next_discovery.get(name, 0) > now:
            return None
        self._next_discovery[name] = now + DISCOVERY_INTERVAL
        try:
            async with asyncio.timeout(self.settings.probe_timeout):
                return (await self._discover(name)).capabilities.kube_version
        except Exception:  # logged by `_discovered`; the cluster's alone, as in `probe_one`
            return None


def _move(table: dict[str, Any], old: str, new: str) -> None:
    if old in table:
        table[new] = table.pop(old)


async def _connect(document: Mapping[str, Any], settings: Settings) -> ClusterClient:
    try:
        return await ClusterClient.connect(
            document, timeout=settings.join_timeout, max_in_flight=settings.in_flight_per_cluster
        )
    except ClusterError as e:
        raise ClusterUnavailable(f"{e}; nothing was stored") from None


def check_name(name: str) -> None:
    try:
        validate_dns_label(name)
    except PlacementError:
        raise InvalidInput(
            f"cluster name {name!r}: must be a DNS label (lower-case letters, digits, '-', "
            "at most 63 characters)"
        ) from None


def check_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        try:
            validate_label_key(key)
            validate_label_value(value)
        except ValueError as e:
            raise InvalidInput(f"label {key}={value}: {e}") from None


PROMETHEUS_FIELDS = ("url", "token", "username", "password")


def check_prometheus(given: Mapping[str, str]) -> dict[str, str]:
    """A cluster's Prometheus as the hub keeps it: an http(s) URL without credentials in
    it, and a bearer token or a username and password, not both."""
    unknown = sorted(set(given) - set(PROMETHEUS_FIELDS))
    if unknown:
        raise InvalidInput(f"prometheus: unknown field {', '.join(unknown)}")
    if not all(isinstance(v, str) for v in given.values()):
        raise InvalidInput("prometheus: every field is a string")
    access = {k: v for k, v in given.items() if v}
    parsed = urlsplit(access.get("url", ""))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidInput("prometheus.url: expected an http:// or https:// URL")
    try:
        _ = parsed.port  # urllib checks the port only when it is read
    except ValueError:
        raise InvalidInput("prometheus.url: the port is not a number 0..65535") from None
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise InvalidInput(
            "prometheus.url: give credentials from files (a bearer token, or a username and "
            "password), not in the URL (no user, query or fragment)"
        )
    if "token" in access and ("username" in access or "password" in access):
        raise InvalidInput("prometheus: give a bearer token or a username and password, not both")
    if ("username" in access) != ("password" in access):
        raise InvalidInput("prometheus: basic auth needs both a username and a password")
    access["url"] = access["url"].rstrip("/")
    return access


def prometheus_secrets(access: Mapping[str, str]) -> list[str]:
    return [access[k] for k in ("token", "password") if k in access]
