"""A simulated node: kubelet and scheduler for one local cluster, no containers.

There is no container runtime on the machines that run our tests, yet rollouts,
health rules and canaries all wait for pods to become Ready. This process plays
the node: it registers a Node and keeps its Lease fresh, binds every pending pod
of the default scheduler that fits it, and reports pods running within a moment
of their creation, with statuses shaped like a containerd node's
(e2e.podstatus). Pods of Jobs finish; pods asked to be unhealthy crash-loop.

It watches pods (list, then watch from the list's resourceVersion, re-list on
410 Gone) instead of polling, and it outlives its API server: when the server
goes away the loops back off and resume once it is back, as a kubelet does.

It also stands in for the apps in its pods: it serves, on
http://127.0.0.1:PORT/metrics, the request metrics each of its Running pods
would expose (e2e.appmetrics), for Prometheus to scrape.

Run: python -m e2e.kubelet --kubeconfig PATH --node NAME --metrics-port PORT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import json
import logging
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from e2e import appmetrics, podstatus
from e2e.binaries import K8S_VERSION
from e2e.podstatus import Action, Pod

log = logging.getLogger("e2e.kubelet")

NODE_IP = "10.240.0.2"
# A real kubelet renews its Lease every 10 s for a 40 s lease, and reports
# node status at least every 5 minutes; the status heartbeat here is shorter so
# that `kubectl get nodes` ages never look stale.
LEASE_SECONDS = 40
LEASE_RENEW_EVERY = 10.0
STATUS_EVERY = 60.0
# How long a Job's container "runs" before it exits, and how often a
# crash-looping container restarts: short, so tests see both quickly.
JOB_RUNTIME = 1.0
CRASH_EVERY = 3.0
# Watches end server-side after this; the loop then resumes from its last
# resourceVersion, which keeps long-lived connections honest.
WATCH_SECONDS = 300
# Back-off after losing the API server: capped low, since a test that restarts
# its server expects the node to carry on within a second or so.
RETRY_MIN, RETRY_MAX = 0.1, 1.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
WATCH_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=WATCH_SECONDS + 30)
CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "250", "ephemeral-storage": "100Gi"}


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pod_path(pod: Pod, sub: str = "") -> str:
    meta = pod["metadata"]
    return f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}{sub}"


def load_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext]:
    """Server URL and TLS context of the current context of a kubeconfig whose
    user authenticates with client certificate files (what the harness writes)."""
    config = yaml.safe_load(path.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def resolve(name: str) -> str:
        return str(path.parent / name)

    tls = ssl.create_default_context(cafile=resolve(cluster["certificate-authority"]))
    tls.load_cert_chain(resolve(user["client-certificate"]), resolve(user["client-key"]))
    return cluster["server"], tls


class APIError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


class Kubelet:
    """The node's state and its three duties: node status, lease, pods."""

    def __init__(self, session: aiohttp.ClientSession, server: str, node: str) -> None:
        self.session = session
        self.server = server
        self.node = node
        self.labels = {
            "kubernetes.io/hostname": node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node-role.kubernetes.io/worker": "",
        }
        # One task per pod UID at a time, tagged with what it does, so a burst of
        # events for one pod never runs two actions on it at once.
        self.work: dict[str, tuple[Action, asyncio.Task[None]]] = {}
        # The pods whose app metrics /metrics serves, by UID, as the watch last saw them.
        self.serving: dict[str, appmetrics.Served] = {}

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(
            method, self.server + path, data=data, headers=headers, timeout=REQUEST_TIMEOUT
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise APIError(response.status, text)
            return json.loads(text) if text else None

    async def patch_status(
        self, path: str, status: Mapping[str, Any], uid: str | None = None
    ) -> None:
        body: dict[str, Any] = {"status": status}
        if uid:
            # A pod recreated under the same name (StatefulSet) has another UID:
            # the patch then fails instead of touching the newcomer.
            body["metadata"] = {"uid": uid}
        await self.call("PATCH", path + "/status", body, "application/strategic-merge-patch+json")

    # -- node and lease ------------------------------------------------------

    def _node_status(self) -> dict[str, Any]:
        now = podstatus.now()
        checks = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        uname = os.uname()
        return {
            "capacity": CAPACITY,
            "allocatable": CAPACITY,
            "conditions": [
                {
                    "type": kind,
                    "status": value,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
                for kind, value, reason, message in checks
            ],
            "addresses": [
                {"type": "InternalIP", "address": NODE_IP},
                {"type": "Hostname", "address": self.node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": uname.release,
                "osImage": "Flotilla e2e simulated node",
                "containerRuntimeVersion": "containerd://2.1.0",
                "kubeletVersion": K8S_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def register(self) -> None:
        """Create the Node (or find it) and report it Ready."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": self.labels},
            "spec": {"podCIDR": "10.244.0.0/16", "podCIDRs": ["10.244.0.0/16"]},
        }
        try:
            await self.call("POST", "/api/v1/nodes", node)
            log.info("registered node %s", self.node)
        except APIError as e:
            if e.status != 409:
                raise
        status = self._node_status()
        # Transition times survive a restart of this process.
        current = await self.call("GET", f"/api/v1/nodes/{self.node}")
        previous = {c["type"]: c for c in current.get("status", {}).get("conditions") or []}
        for condition in status["conditions"]:
            old = previous.get(condition["type"])
            if old and old.get("status") == condition["status"]:
                condition["lastTransitionTime"] = old["lastTransitionTime"]
        await self.patch_status(f"/api/v1/nodes/{self.node}", status)

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {
            "holderIdentity": self.node,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": _micro_now(),
        }
        try:
            await self.call("PATCH", path, {"spec": spec}, "application/merge-patch+json")
        except APIError as e:
            if e.status != 404:
                raise
            node = await self.call("GET", f"/api/v1/nodes/{self.node}")
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.node,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": self.node,
                            "uid": node["metadata"]["uid"],
                        }
                    ],
                },
                "spec": spec,
            }
            await self.call("POST", path.rsplit("/", 1)[0], lease)

    async def heartbeat(self) -> None:
        """Lease every few seconds, node status now and then; re-register a Node
        that someone deleted."""
        since_status = 0.0
        while True:
            try:
                if since_status >= STATUS_EVERY:
                    await self.register()
                    since_status = 0.0
                await self.renew_lease()
            except APIError as e:
                if e.status == 404:
                    since_status = STATUS_EVERY
                log.warning("heartbeat: %s", e)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("heartbeat: %s", e or type(e).__name__)
            await asyncio.sleep(LEASE_RENEW_EVERY)
            since_status += LEASE_RENEW_EVERY

    # -- pods ----------------------------------------------------------------

    async def watch_pods(self) -> None:
        """List, then watch from there, for ever; every pod event goes to `on_pod`."""
        version: str | None = None
        delay = RETRY_MIN
        while True:
            try:
                if version is None:
                    version = await self._list_pods()
                version = await self._watch_pods(version)
                delay = RETRY_MIN
            except Gone:
                version = None
            except (APIError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                # ValueError: a line cut short when the server went away mid-event.
                log.warning("pods: %s; retrying in %.1fs", e or type(e).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _list_pods(self) -> str:
        seen: set[str] = set()
        token = ""
        while True:
            page = await self.call("GET", f"/api/v1/pods?limit=500&continue={token}")
            for pod in page["items"]:
                seen.add(pod["metadata"]["uid"])
                self.on_pod("ADDED", pod)
            token = page["metadata"].get("continue") or ""
            if not token:
                break
        for uid in set(self.work) - seen:
            self._forget(uid)
        for uid in set(self.serving) - seen:
            del self.serving[uid]
        return str(page["metadata"]["resourceVersion"])

    async def _watch_pods(self, version: str) -> str:
        params = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async with self.session.get(
            self.server + "/api/v1/pods", params=params, timeout=WATCH_TIMEOUT
        ) as response:
            if response.status == 410:
                raise Gone
            if response.status >= 400:
                raise APIError(response.status, await response.text())
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone
                    raise APIError(int(obj.get("code", 500)), str(obj.get("message")))
                version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self.on_pod(kind, obj)
        return version

    def _forget(self, uid: str) -> None:
        if entry := self.work.pop(uid, None):
            entry[1].cancel()

    def _track(self, event: str, pod: Pod) -> None:
        """Keep `serving` to the pods that answer requests, each with when it was first seen."""
        uid = pod["metadata"]["uid"]
        if event != "DELETED" and appmetrics.serves(pod, self.node):
            previous = self.serving.get(uid)
            first_seen = previous.first_seen if previous else time.time()
            self.serving[uid] = appmetrics.Served(pod, first_seen)
        else:
            self.serving.pop(uid, None)

    def metrics(self) -> bytes:
        return appmetrics.exposition(self.serving.values(), time.time())

    def on_pod(self, event: str, pod: Pod) -> None:
        self._track(event, pod)
        uid = pod["metadata"]["uid"]
        if event == "DELETED":
            self._forget(uid)
            return
        action = podstatus.decide(pod, self.node, self.labels)
        if action is Action.NOTHING:
            return
        current = self.work.get(uid)
        if current and not current[1].done():
            if current[0] is action or (current[0] is Action.START and action is Action.SUPERVISE):
                return
            current[1].cancel()
        steps: dict[Action, Callable[[Pod], Awaitable[None]]] = {
            Action.DELETE: self.finish,
            Action.BIND: self.bind,
            Action.UNSCHEDULABLE: self.refuse,
            Action.START: self.start,
            Action.SUPERVISE: self.supervise,
        }
        step = steps[action]
        task = asyncio.create_task(self._guarded(step.__name__, pod, lambda: step(pod)))
        self.work[uid] = (action, task)

    async def _guarded(self, what: str, pod: Pod, step: Callable[[], Awaitable[None]]) -> None:
        """Run one step until it succeeds. A pod that vanished or changed under us
        ends it quietly; an unreachable or overloaded server is retried, since
        the watch that resumes afterwards brings no new event for this pod; any
        other failure is logged, never lost."""
        name = pod["metadata"]["name"]
        delay = RETRY_MIN
        while True:
            try:
                await step()
                return
            except APIError as e:
                if e.status in (404, 409):
                    return
                if e.status != 429 and e.status < 500:
                    log.warning("%s %s: %s", what, name, e)
                    return
                problem = str(e)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                problem = str(e) or type(e).__name__
            except Exception:
                log.exception("%s %s failed", what, name)
                return
            log.warning("%s %s: %s; retrying in %.1fs", what, name, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def finish(self, pod: Pod) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": pod["metadata"]["uid"]},
        }
        await self.call("DELETE", _pod_path(pod), body)

    async def bind(self, pod: Pod) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        await self.call("POST", _pod_path(pod, "/binding"), binding)

    async def refuse(self, pod: Pod) -> None:
        await self.patch_status(
            _pod_path(pod), podstatus.unschedulable_status(pod), pod["metadata"]["uid"]
        )

    async def start(self, pod: Pod) -> None:
        status = podstatus.running_status(pod, NODE_IP)
        await self.patch_status(_pod_path(pod), status, pod["metadata"]["uid"])
        # Supervision retries on its own: a failure from here on must not
        # report the pod started again (its restart count would go back).
        started = {**pod, "status": status}
        await self._guarded("supervise", started, lambda: self.supervise(started))

    async def supervise(self, pod: Pod) -> None:
        """What happens to a running pod next: a Job's pod or a pod that never
        restarts exits; a crashing container restarts, for ever."""
        uid = pod["metadata"]["uid"]
        crashing = podstatus.crashing_containers(pod)
        if crashing and podstatus.restarts_containers(pod):
            restarts = max(c.get("restartCount", 0) for c in pod["status"]["containerStatuses"])
            while True:
                await asyncio.sleep(CRASH_EVERY)
                restarts += 1
                status = podstatus.running_status(pod, NODE_IP, restarts)
                report = functools.partial(self.patch_status, _pod_path(pod), status, uid)
                await self._guarded("restart", pod, report)
        elif crashing or podstatus.runs_to_completion(pod):
            await asyncio.sleep(JOB_RUNTIME)
            status = podstatus.finished_status(pod, NODE_IP, succeeded=podstatus.succeeds(pod))
            await self.patch_status(_pod_path(pod), status, uid)

    async def run(self) -> None:
        delay = RETRY_MIN
        while True:
            try:
                await self.register()
                break
            except (APIError, aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("register: %s; retrying in %.1fs", e or type(e).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        await asyncio.gather(self.heartbeat(), self.watch_pods())


@contextlib.asynccontextmanager
async def metrics_server(kubelet: Kubelet, port: int) -> AsyncIterator[None]:
    """Serve the kubelet's app metrics on 127.0.0.1:`port` while open."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=kubelet.metrics(), headers={"Content-Type": appmetrics.CONTENT_TYPE}
        )

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        log.info("serving app metrics on http://127.0.0.1:%d/metrics", port)
        yield
    finally:
        await runner.cleanup()


async def serve(kubeconfig: Path, node: str, metrics_port: int) -> None:
    server, tls = load_kubeconfig(kubeconfig)
    # A pod manifest can be far larger than aiohttp's default 64 KiB line limit.
    connector = aiohttp.TCPConnector(ssl=tls, limit=32)
    async with aiohttp.ClientSession(connector=connector, read_bufsize=2**22) as session:
        kubelet = Kubelet(session, server, node)
        async with metrics_server(kubelet, metrics_port):
            runner = asyncio.create_task(kubelet.run())
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await runner


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.kubelet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument(
        "--metrics-port", type=int, required=True, help="serve the pods' app metrics here"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args.kubeconfig, args.node, args.metrics_port))


if __name__ == "__main__":
    main()
