"""The hub's Prometheus client (`hub.analysis.prometheus.instant`) against a real Prometheus:
one number, or one line saying why not, and never a credential in that line.

Each Prometheus here scrapes nothing (PromQL alone makes every answer needed), so no cluster
is needed and none is started: a Prometheus of no targets is up in a fraction of a second.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from e2e.prometheus import Prometheus, start_prometheus
from hub.analysis.prometheus import Endpoint, MeasurementError, instant

# Bounds a hang; every answer here comes in milliseconds.
TIMEOUT = 10.0
USER, PASSWORD = "flotilla", "s3cret"
WRONG = "n0t-the-passw0rd"
TOKEN = "bearer-t0ken-abcdef"
TWO_SERIES = 'vector(1) or label_replace(vector(2), "copy", "yes", "", "")'


@pytest.fixture(scope="module")
def open_prometheus() -> Iterator[Prometheus]:
    with start_prometheus({}) as server:
        yield server


@pytest.fixture(scope="module")
def guarded_prometheus() -> Iterator[Prometheus]:
    with start_prometheus({}, basic_auth=(USER, PASSWORD)) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def measure(
    session: aiohttp.ClientSession, endpoint: Endpoint, query: str, timeout: float = TIMEOUT
) -> str:
    """The message of the `MeasurementError` that `query` must end in."""
    with pytest.raises(MeasurementError) as raised:
        await instant(session, endpoint, query, timeout=timeout)
    message = str(raised.value)
    assert "\n" not in message, message
    return message


def prometheus_error(server: Prometheus, query: str) -> str:
    """What Prometheus itself says of `query`, asked without the hub's client."""
    data = urllib.parse.urlencode({"query": query}).encode()
    request = urllib.request.Request(f"{server.url}/api/v1/query", data=data)
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=TIMEOUT)
    with raised.value as answer:
        body = json.load(answer)
    assert body["status"] == "error", body
    error: str = body["error"]
    return error


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("vector(1)", 1.0),
        ("scalar(vector(0.25))", 0.25),
        ("-2.5", -2.5),
        (f"sum({TWO_SERIES})", 3.0),
    ],
)
async def test_one_number_is_the_value(
    open_prometheus: Prometheus, session: aiohttp.ClientSession, query: str, value: float
) -> None:
    assert await instant(session, Endpoint(open_prometheus.url), query, timeout=TIMEOUT) == value


async def test_a_query_longer_than_a_proxy_takes_in_a_url_is_answered(
    open_prometheus: Prometheus, session: aiohttp.ClientSession
) -> None:
    """Proxies in front of a Prometheus commonly refuse URLs past 8 KiB; the query goes
    in a form body, where an `&` left unencoded would cut it short into a parse error.
    (Prometheus itself would take a GET this long: this shows that the whole query
    arrives, not which method carried it.)"""
    label = "a&b=c+d %" * (8 << 10)
    query = f'label_replace(vector(5), "long", "{label}", "", "")'
    assert await instant(session, Endpoint(open_prometheus.url), query, timeout=TIMEOUT) == 5.0


async def test_a_url_with_a_path_and_trailing_slash_is_queried_below_it(
    open_prometheus: Prometheus, session: aiohttp.ClientSession
) -> None:
    assert (
        await instant(session, Endpoint(f"{open_prometheus.url}/"), "vector(2)", timeout=TIMEOUT)
        == 2.0
    )
    # Prometheus serves no API under /nothing: a 404, said as such, not a parse failure.
    message = await measure(session, Endpoint(f"{open_prometheus.url}/nothing"), "vector(1)")
    assert message.startswith(f"Prometheus at {open_prometheus.url}/nothing answered HTTP 404")


@pytest.mark.parametrize(
    "query",
    [
        "sum(",  # a parse error: HTTP 400
        "time() > 0 == 1",  # another one
        'label_replace(vector(1), "x", "y", "z", "(")',  # an execution error: HTTP 422
    ],
)
async def test_a_promql_error_is_prometheus_own_text(
    open_prometheus: Prometheus, session: aiohttp.ClientSession, query: str
) -> None:
    message = await measure(session, Endpoint(open_prometheus.url), query)
    assert message == f"PromQL error: {prometheus_error(open_prometheus, query)}"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('up{job="none"}', "query returned no series"),
        ("absent(vector(1))", "query returned no series"),
        (TWO_SERIES, "query returned 2 series; it must return one (aggregate it, e.g. with sum())"),
        ("vector(0) / 0", "query returned NaN; it must return a finite number"),
        ("scalar(vector(0) / 0)", "query returned NaN; it must return a finite number"),
        ("vector(1) / 0", "query returned +Inf; it must return a finite number"),
        ("-1 / 0", "query returned -Inf; it must return a finite number"),
        ('"hello"', "query returned a string; it must return one number"),
    ],
)
async def test_no_one_finite_number_is_an_error(
    open_prometheus: Prometheus, session: aiohttp.ClientSession, query: str, message: str
) -> None:
    assert await measure(session, Endpoint(open_prometheus.url), query) == message


async def test_a_range_vector_is_an_error(
    open_prometheus: Prometheus, session: aiohttp.ClientSession
) -> None:
    message = await measure(session, Endpoint(open_prometheus.url), 'up{job="none"}[1m]')
    assert message.startswith("query returned a range vector; it must return one number")


async def test_a_stopped_prometheus_is_unreachable_until_it_is_back(
    session: aiohttp.ClientSession,
) -> None:
    """One session throughout, as the hub keeps one: its pooled connection to the stopped
    process is no reason to fail once Prometheus is back."""
    with start_prometheus({}) as server:
        endpoint = Endpoint(server.url)
        assert await instant(session, endpoint, "vector(1)", timeout=TIMEOUT) == 1.0
        server.pause()
        try:
            message = await measure(session, endpoint, "vector(1)")
            assert message.startswith(f"Prometheus at {server.url} unreachable: "), message
            assert message != f"Prometheus at {server.url} unreachable: "  # it says why
        finally:
            server.resume()
        assert await instant(session, endpoint, "vector(1)", timeout=TIMEOUT) == 1.0


async def test_a_closed_port_is_unreachable_and_a_silent_one_times_out(
    session: aiohttp.ClientSession, closed_port: int, silent_port: int
) -> None:
    closed = f"http://127.0.0.1:{closed_port}"
    message = await measure(session, Endpoint(closed), "vector(1)")
    assert message.startswith(f"Prometheus at {closed} unreachable: "), message
    silent = f"http://127.0.0.1:{silent_port}"
    message = await measure(session, Endpoint(silent), "vector(1)", timeout=0.5)
    assert message == f"Prometheus at {silent}: no answer within 0.5s"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_auth_lets_in_the_right_credentials_only(
    guarded_prometheus: Prometheus, session: aiohttp.ClientSession, closed_port: int
) -> None:
    url = guarded_prometheus.url
    netloc = urllib.parse.urlsplit(url).netloc
    right = [
        Endpoint(url, username=USER, password=PASSWORD),
        Endpoint(f"http://{USER}:{PASSWORD}@{netloc}"),
    ]
    for endpoint in right:
        assert await instant(session, endpoint, "vector(1)", timeout=TIMEOUT) == 1.0, endpoint

    refused = f"Prometheus at {url} refused the credentials (HTTP 401)"
    wrong = [
        Endpoint(url, username=USER, password=WRONG),
        Endpoint(f"http://{USER}:{WRONG}@{netloc}"),
        Endpoint(url, token=TOKEN),
        Endpoint(url),
    ]
    messages = []
    for endpoint in wrong:
        message = await measure(session, endpoint, "vector(1)")
        assert message == refused, endpoint
        messages.append(message)
    # A credential must not leak through the message of a failed connection either.
    for endpoint in (
        Endpoint(f"http://127.0.0.1:{closed_port}", username=USER, password=PASSWORD),
        Endpoint(f"http://{USER}:{PASSWORD}@127.0.0.1:{closed_port}"),
        Endpoint(f"http://127.0.0.1:{closed_port}", token=TOKEN),
    ):
        message = await measure(session, endpoint, "vector(1)")
        assert message.startswith(f"Prometheus at http://127.0.0.1:{closed_port} unreachable: ")
        messages.append(message)
    secrets = [
        PASSWORD,
        WRONG,
        TOKEN,
        _basic(USER, PASSWORD),
        _basic(USER, WRONG),
        *guarded_prometheus.headers.values(),
    ]
    shown = [
        *messages,
        *(repr(e) for e in right + wrong),
        *(str(e) for e in right + wrong),
        *(e.display for e in right + wrong),
    ]
    for text in shown:
        for secret in secrets:
            assert secret not in text, (secret, text)
    assert repr(right[1]) == f"Endpoint('{url}')"
