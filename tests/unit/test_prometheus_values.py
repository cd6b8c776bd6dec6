"""What a Prometheus answer is worth as a measurement, and endpoints that keep their
credentials out of every message."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from hub.analysis.prometheus import Endpoint, MeasurementError, value_of

TOKEN = "s3cr3t-t0ken-value"
PASSWORD = "hunter2-hunter2"


def vector(*values: str) -> dict[str, Any]:
    series = [
        {"metric": {"pod": f"web-{i}"}, "value": [1700000000.5, v]} for i, v in enumerate(values)
    ]
    return {"status": "success", "data": {"resultType": "vector", "result": series}}


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        ({"status": "success", "data": {"resultType": "scalar", "result": [1.5, "0.25"]}}, 0.25),
        (vector("0.0123"), 0.0123),
        (vector("-3"), -3.0),
        (vector("1e3"), 1000.0),
    ],
)
def test_one_number_is_a_value(payload: dict[str, Any], value: float) -> None:
    assert value_of(payload) == value


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {
                "status": "error",
                "errorType": "bad_data",
                "error": '1:5: parse error: unexpected "}"\nin label matcher',
            },
            'PromQL error: 1:5: parse error: unexpected "}" in label matcher',
        ),
        ({"status": "error"}, "PromQL error: no error text"),
        (vector(), "query returned no series"),
        (
            vector("1", "2", "3"),
            "query returned 3 series; it must return one (aggregate it, e.g. with sum())",
        ),
        (vector("NaN"), "query returned NaN; it must return a finite number"),
        (vector("+Inf"), "query returned +Inf; it must return a finite number"),
        (vector("-Inf"), "query returned -Inf; it must return a finite number"),
        (vector("many"), "query returned 'many', not a number"),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            "query returned a range vector; it must return one number (drop the [range] "
            "selector, or wrap it, e.g. in rate())",
        ),
        (
            {"status": "success", "data": {"resultType": "string", "result": [1.5, "up"]}},
            "query returned a string; it must return one number",
        ),
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "histogram": [1, {}]}]},
            },
            "query returned a sample without a number (a histogram?)",
        ),
        ({"status": "success"}, "the answer is not a Prometheus query result"),
        ({"status": "success", "data": {}}, "the answer is not a Prometheus query result"),
        ({"data": {"resultType": "scalar"}}, "the answer is not a Prometheus query result"),
    ],
)
def test_anything_else_is_a_measurement_error_in_one_line(
    payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(MeasurementError) as raised:
        value_of(payload)
    assert str(raised.value) == message


def test_an_endpoint_is_shown_without_its_credentials() -> None:
    endpoint = Endpoint(f"https://metrics:{PASSWORD}@prom.example:9443/prometheus/?key={TOKEN}")
    assert endpoint.display == "https://prom.example:9443/prometheus/"
    assert repr(endpoint) == "Endpoint('https://prom.example:9443/prometheus/')"
    assert endpoint.query_url == f"https://prom.example:9443/prometheus/api/v1/query?key={TOKEN}"
    pair = base64.b64encode(f"metrics:{PASSWORD}".encode()).decode()
    assert endpoint.headers == {"Authorization": f"Basic {pair}"}
    assert endpoint.scrub(f"refused {PASSWORD} for key={TOKEN} ({pair})") == (
        "refused *** for *** (***)"
    )


@pytest.mark.parametrize(
    ("endpoint", "header"),
    [
        (Endpoint("http://127.0.0.1:9090", token=TOKEN), f"Bearer {TOKEN}"),
        (
            Endpoint("http://127.0.0.1:9090/", username="ops", password=PASSWORD),
            "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode(),
        ),
        (
            Endpoint("http://ops%40corp:p%3Ass@[::1]:9090"),
            "Basic " + base64.b64encode(b"ops@corp:p:ss").decode(),
        ),
    ],
)
def test_credentials_go_in_a_header_and_nowhere_else(endpoint: Endpoint, header: str) -> None:
    assert endpoint.headers == {"Authorization": header}
    assert "@" not in endpoint.query_url
    shown = f"{endpoint!r} {endpoint.display} {endpoint.query_url}"
    assert TOKEN not in shown and PASSWORD not in shown and "p%3Ass" not in shown
    assert endpoint.scrub(f"echoed {header}") == f"echoed {header.split()[0]} ***"


def test_an_endpoint_without_credentials_sends_none() -> None:
    endpoint = Endpoint("http://[::1]:9090")
    assert (endpoint.headers, endpoint.display) == ({}, "http://[::1]:9090")
    assert endpoint.query_url == "http://[::1]:9090/api/v1/query"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"url": f"prom.example:9090?token={TOKEN}"}, "expected an http:// or https:// URL"),
        ({"url": f"ftp://u:{PASSWORD}@prom.example"}, "expected an http:// or https:// URL"),
        ({"url": f"http://u:{PASSWORD}@prom.example:99999"}, "prom.example: the port is not"),
        (
            {"url": f"http://u:{PASSWORD}@prom.example", "token": TOKEN},
            "http://prom.example: give a bearer token or basic auth, not both",
        ),
        (
            {"url": "http://prom.example", "token": TOKEN, "username": "u"},
            "http://prom.example: give a bearer token or basic auth, not both",
        ),
    ],
)
def test_a_wrong_endpoint_is_refused_without_quoting_a_secret(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        Endpoint(**arguments)
    assert str(raised.value).startswith(message)
    assert TOKEN not in str(raised.value) and PASSWORD not in str(raised.value)
