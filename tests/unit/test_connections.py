"""What one member cluster's connections cost the hub while it is quiet.

Two settings ride on attributes of asyncio's and aiohttp's own, which a new version could
rename; the code then does nothing, silently, and these tests are what says so:
- TLS connections read a record at a time (clusters.client.small_tls_buffers): asyncio's
  256 KiB buffer per connection was most of an idle member cluster's memory;
- an idle connection is kept for KEEPALIVE, longer than the hub leaves a quiet cluster
  alone (its probe and discovery, every minute and a prober's pass), instead of aiohttp's
  15 s, and shorter than the API server keeps it: each request of a quiet cluster had
  paid a TLS handshake."""

from __future__ import annotations

from asyncio import sslproto

import aiohttp
import pytest

from clusters.client import KEEPALIVE, TLS_READ_BUFFER, ClusterClient, small_tls_buffers
from hub.fleet.registry import DISCOVERY_INTERVAL, WATCH_QUIET

# Seconds an API server keeps an idle connection (k8s.io/apiserver's IdleTimeout).
API_SERVER_IDLE = 90.0
# The prober's passes come a second apart: a cluster due at 60 s is asked at up to 61.
PASS = 1.0

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
    "users": [{"name": "u", "user": {"token": "not-a-real-token-at-all"}}],
    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "x",
}


def test_tls_connections_made_after_it_read_one_record_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)
    small_tls_buffers()
    assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER


async def test_a_cluster_client_keeps_an_idle_connection_past_the_hubs_quiet_interval() -> None:
    client = await ClusterClient.connect(KUBECONFIG)
    try:
        connector = client.api.rest_client.pool_manager.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector._keepalive_timeout == KEEPALIVE
        assert max(WATCH_QUIET, DISCOVERY_INTERVAL) + PASS < KEEPALIVE < API_SERVER_IDLE
    finally:
        await client.close()
