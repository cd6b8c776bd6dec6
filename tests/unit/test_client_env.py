"""The cluster client reads the proxy environment once, when it connects, not per request."""

from __future__ import annotations

import pytest

from clusters.client import ClusterClient
from tests.unit.fakeapi import kubeconfig


async def test_proxy_comes_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = await ClusterClient.connect(kubeconfig("https://cluster.example:6443"))
    try:
        rest = client.api.rest_client
        assert rest.proxy == "http://proxy.example:3128"
        assert rest.proxy_headers["Proxy-Authorization"].startswith("Basic ")
        assert rest.pool_manager.trust_env is False
    finally:
        await client.close()


async def test_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "cluster.example")
    client = await ClusterClient.connect(kubeconfig("https://cluster.example:6443"))
    try:
        assert not client.api.rest_client.proxy
    finally:
        await client.close()
