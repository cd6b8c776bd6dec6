"""The harness' Prometheus configuration, without starting one."""

from __future__ import annotations

import json

from e2e.prometheus import scrape_config


def test_every_cluster_is_a_target_labelled_with_its_name_every_second() -> None:
    config = json.loads(
        scrape_config(
            {
                "e2e-2": "http://127.0.0.1:9200/metrics",
                "e2e-1": "http://127.0.0.1:9100/app/metrics",
            }
        )
    )
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "1s"
    [job] = config["scrape_configs"]
    assert job["static_configs"] == [
        {
            "targets": ["127.0.0.1:9100"],
            "labels": {
                "cluster": "e2e-1",
                "__scheme__": "http",
                "__metrics_path__": "/app/metrics",
            },
        },
        {
            "targets": ["127.0.0.1:9200"],
            "labels": {"cluster": "e2e-2", "__scheme__": "http", "__metrics_path__": "/metrics"},
        },
    ]


def test_each_extra_job_is_one_target_of_its_own_without_a_cluster_label() -> None:
    config = json.loads(
        scrape_config(
            {"e2e-1": "http://127.0.0.1:9100/metrics"},
            jobs={"flotilla": "http://127.0.0.1:7351/metrics"},
        )
    )
    apps, hub = config["scrape_configs"]
    assert apps["job_name"] == "apps" and len(apps["static_configs"]) == 1
    assert hub == {
        "job_name": "flotilla",
        "static_configs": [
            {
                "targets": ["127.0.0.1:7351"],
                "labels": {"__scheme__": "http", "__metrics_path__": "/metrics"},
            }
        ],
    }
