"""Every default the hub runs with, in one frozen object.

`flotilla serve`'s options take their defaults from here, the composition root hands the
one `Settings` it built to each part, and no part keeps a default of its own: a value
that is tuned once is tuned everywhere, and `--help` always tells the truth.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:7350"
# Where `--store kubernetes` keeps its custom resources and Secrets unless told otherwise:
# the namespace KubeVela's and OpenKruise's controllers are conventionally installed in.
DEFAULT_STORE_NAMESPACE = "flotilla-system"


class StoreKind(enum.StrEnum):
    """Which store holds the hub's state (hub.state.interface)."""

    SQLITE = "sqlite"
    """One file in the hub's home: nothing to install, one hub."""
    KUBERNETES = "kubernetes"
    """Custom resources and Secrets in a management cluster: the state outlives the
    machine the hub runs on."""


@dataclass(frozen=True)
class Settings:
    listen: str = DEFAULT_LISTEN
    """HOST:PORT of the API; loopback, because the hub holds every cluster's credentials."""
    probe_interval: float = 5.0
    """Seconds between health probes of a healthy member cluster."""
    probe_backoff_max: float = 15.0
    """A failing cluster is probed less and less often, down to once in this many seconds."""
    probe_timeout: float = 3.0
    """One probe's bound: a dead cluster must not hold the prober."""
    join_timeout: float = 9.0
    """`cluster join` answers within this even against a black-holed address."""
    step_timeout: float = 300.0
    """Seconds a deploy step (or one canary phase) waits for its objects to be healthy."""
    fanout: int = 32
    """Clusters deployed at once when a step sets no `parallelism` (KubeVela's default is
    unbounded; 32 keeps sockets and memory bounded at 100+ clusters)."""
    in_flight_per_cluster: int = 16
    """Requests in flight to one member cluster at once."""
    canary_grace_seconds: float = 3.0
    """kruise-rollout's default `gracePeriodSeconds`: time for proxies to catch up after
    each traffic move."""
    chart_timeout: float = 30.0
    """One chart repository request: long enough for a slow registry, short enough that a
    dead one fails a deploy quickly instead of holding a fan-out hostage."""
    status_read_timeout: float = 3.0
    """Per cluster, for the few reads of a status call that no watch cache answers."""
    prometheus_timeout: float = 5.0
    """One Prometheus query of a metric analysis; a query that takes longer is a
    measurement error, counted like any other."""
    log_level: str = "info"
    log_format: str = "text"
    """`text` for people, `json` for log collectors: one object per line."""
    metrics_listen: str | None = None
    """HOST:PORT of a second listener that serves only `/metrics`, without the token (for
    a Prometheus that cannot send one); None: `/metrics` on the API, with the token."""
    events_per_app: int = 1000
    """Events kept per application; older ones are dropped as new ones come."""
    events_max_age: float = 7 * 24 * 3600.0
    """Seconds an event is kept at most."""
    heal: bool = True
    """Re-apply what drifted from the applied revision (KubeVela's default); False: drift
    is shown and logged, never healed."""
    store: StoreKind = StoreKind.SQLITE
    store_kubeconfig: str | None = None
    """The management cluster of `store: kubernetes` (a kubeconfig file)."""
    store_context: str | None = None
    """Its context; None: the kubeconfig's current context."""
    store_namespace: str = DEFAULT_STORE_NAMESPACE
    token_file: str | None = None
    """A file holding the API's bearer token (a mounted Secret), so that replicas behind
    one Service accept the same token; None: a fresh random token at each start."""
    replica_id: str | None = None
    """This hub's name among the replicas sharing a Kubernetes store; None: the host's
    name and the process id (a pod's name is unique, and its pid is 1)."""
    lease_seconds: float = 15.0
    """How long a replica's shard Leases last unrenewed: a replica that dies loses its
    shards to the others this long after its last renewal (client-go's default)."""
    renew_seconds: float = 5.0
    """How often a replica renews its Leases and looks at the others' (a third of the
    lease, so two renewals may fail before the shards are at risk)."""


DEFAULTS = Settings()
"""What the hub runs with unless `flotilla serve`'s options say otherwise."""
