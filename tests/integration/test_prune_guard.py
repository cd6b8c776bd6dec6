"""The prune guard on the real clusters: a revision that would delete every object of a
release, or more than half of them, is refused at `up` with the objects named, and nothing
is stored; `--allow-prune` lets it through; `plan` and `diff` show the deletions first."""

from __future__ import annotations

import pytest

from tests.fleet import Fleet
from tests.integration.test_diff import objects, shapes_app
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster


def _configmaps(fleet: Fleet) -> set[str]:
    found = fleet.kubectl("dev", "get", "configmaps", "-l", "flotilla.dev/managed-by=flotilla")
    return {item["metadata"]["name"] for item in found["items"]}


def _revisions(fleet: Fleet) -> list[int]:
    history = fleet.hub.ok("history", "shapes", "-o", "json").json()
    return [r["revision"] for r in history["revisions"]]


def test_a_revision_that_empties_or_halves_a_release_is_refused(fleet: Fleet) -> None:
    ns, hub = fleet.namespace, fleet.hub
    assert (
        fleet.up(shapes_app(fleet.workdir, ns, configmaps=["a", "b", "c", "d"]), "--wait").code == 0
    )
    assert _configmaps(fleet) == {"a", "b", "c", "d"}

    most = shapes_app(fleet.workdir, ns, file="most.yaml", configmaps=["a"])
    view = hub.ok("plan", "-f", str(most), "-o", "json").json()
    assert_shape(view, "plan")
    (target,) = view["steps"][0]["targets"]
    assert target["prune"] == [f"ConfigMap {ns}/{name}" for name in ("b", "c", "d")]
    assert f"dev/shapes: up would delete ConfigMap {ns}/b" in hub.ok("plan", "-f", str(most)).stdout
    pruned = {
        k
        for k, o in objects(hub.cli("diff", "-f", str(most), "-o", "json").json()).items()
        if o["action"] == "pruned"
    }
    assert pruned == {"ConfigMap/b", "ConfigMap/c", "ConfigMap/d"}

    refused = fleet.up(most)
    assert refused.code == 2, refused.stdout + refused.stderr
    assert "--allow-prune" in refused.stderr and "Traceback" not in refused.stderr
    line = next(x for x in refused.stderr.splitlines() if x.startswith("cluster dev"))
    assert line == (
        f"cluster dev, component shapes: would delete 3 of 4 object(s): "
        f"ConfigMap {ns}/b, ConfigMap {ns}/c, ConfigMap {ns}/d"
    )
    emptied = fleet.up(shapes_app(fleet.workdir, ns, file="none.yaml"))
    assert emptied.code == 2
    assert "cluster dev, component shapes: would delete all 4 object(s)" in emptied.stderr
    assert _revisions(fleet) == [1], "a refused revision was stored"
    assert _configmaps(fleet) == {"a", "b", "c", "d"}

    # One of four is no more than half: no flag needed.
    fewer = shapes_app(fleet.workdir, ns, file="fewer.yaml", configmaps=["a", "b", "c"])
    assert fleet.up(fewer, "--wait").code == 0
    assert _configmaps(fleet) == {"a", "b", "c"}

    allowed = fleet.up(most, "--allow-prune", "--wait")
    assert allowed.code == 0, allowed.stderr
    assert _configmaps(fleet) == {"a"}
    assert _revisions(fleet) == [1, 2, 3]
