"""The hub's TLS connections read a record at a time (clusters.client.small_tls_buffers):
asyncio's 256 KiB buffer per connection was most of an idle member cluster's memory.

The setting rides on an attribute of asyncio's own (each connection allocates
`SSLProtocol.max_size` bytes as it is made), which a new Python could rename; the
function then does nothing, silently, and this test is what says so."""

from __future__ import annotations

from asyncio import sslproto

import pytest

from clusters.client import TLS_READ_BUFFER, small_tls_buffers


def test_tls_connections_made_after_it_read_one_record_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)
    small_tls_buffers()
    assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER
