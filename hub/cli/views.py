"""How application views print for people: the status tree, the plan, progress tables.

Scripts use `-o json|yaml` and get the hub's data unchanged; these renderings are only
for terminals, so they favour what an operator reads first: health, then what to do.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from hub.cli.output import ago, grid, health


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def status_tree(status: dict[str, Any], *, every_object: bool = False) -> Tree:
    """application -> step -> cluster -> release -> objects; healthy objects are folded
    into a count unless `every_object`, so the default view fits in a terminal."""
    version = f" ({status['publishVersion']})" if status.get("publishVersion") else ""
    root = Tree(
        f"[bold]{status['name']}[/bold]  revision {status['revision']}{version}  "
        f"{status['phase']}  {health(status['health'])}"
    )
    for step in status["steps"]:
        line = f"step [bold]{step['name']}[/bold] ({step['type']})  {step['phase']}"
        if step["type"] == "deploy":
            line += f"  {health(step['health'])}"
        if step.get("message"):
            line += f"  [dim]{step['message']}[/dim]"
        branch = root.add(line)
        for measured in step.get("analysis", []):
            if measured["component"] is None:  # a check-metrics step's, per cluster
                where = f"cluster {measured['cluster']}: " if measured["cluster"] else ""
                branch.add(where + _measurement_line(measured))
        for cluster in step["clusters"]:
            reach = (
                ""
                if cluster["reachable"]
                else f"  [red]unreachable[/red], last seen {ago(cluster['lastSeen'])}"
            )
            node = branch.add(
                f"cluster [bold]{cluster['name']}[/bold] [dim]{_labels(cluster['labels'])}[/dim]  "
                f"{health(cluster['health'])}{reach}"
            )
            for release in cluster["releases"]:
                rel = node.add(
                    f"release {release['release']}  [dim]{release['namespace']}[/dim]  "
                    f"{release['chart']}  {release['phase']}  {health(release['health'])}"
                    + (f"  [dim]{release['reason']}[/dim]" if release["reason"] else "")
                )
                if release.get("rollout"):
                    rel.add(_rollout_line(release["rollout"]))
                for measured in step.get("analysis", []):
                    if (measured["cluster"], measured["component"]) == (
                        cluster["name"],
                        release["component"],
                    ):
                        rel.add(_measurement_line(measured))
                _objects(rel, release["objects"], every_object)
    if status.get("next"):
        root.add(f"[yellow]next:[/yellow] {status['next']}")
    return root


def _rollout_line(rollout: dict[str, Any]) -> str:
    weight = f"{rollout['weight']}% of traffic" if rollout["weight"] is not None else "headers"
    canary = f", {rollout['canary']}" if rollout.get("canary") else ""
    return (
        f"[cyan]canary[/cyan] {rollout['workload']}  step {rollout['step']}  "
        f"{rollout['stage']}  {weight}{canary}"
    )


_OUTCOME_STYLE = {"pass": "green", "fail": "red", "error": "yellow"}
_VERDICT_STYLE = {"passed": "green", "failed": "red", "errored": "red", "running": "cyan"}


def _measurement_line(m: dict[str, Any]) -> str:
    """`analysis error-rate = 0.012 (<0.05) pass  running: 2 passed, 0 failed`."""
    value = "no value" if m["value"] is None else f"{m['value']:.4g}"
    outcome = f"[{_OUTCOME_STYLE.get(m['outcome'], 'white')}]{m['outcome']}[/]"
    verdict = f"[{_VERDICT_STYLE.get(m['verdict'], 'white')}]{m['verdict']}[/]"
    counts = f"{m['passes']} passed, {m['failures']} failed"
    if m["errors"]:
        counts += f", {m['errors']} errors in a row"
    detail = f"  [dim]{escape(m['message'])}[/dim]" if m["message"] else ""
    return (
        f"analysis {m['metric']} = {value} ({m['condition']}) {outcome}  "
        f"{verdict}: {counts}{detail}"
    )


def _objects(node: Tree, objects: list[dict[str, Any]], every_object: bool) -> None:
    folded, shown = 0, 0
    for obj in objects:
        if obj["health"] == "Healthy" and not every_object:
            folded += 1
            continue
        where = f"{obj['namespace']}/{obj['name']}" if obj.get("namespace") else obj["name"]
        reason = f"  [dim]{obj['reason']}[/dim]" if obj.get("reason") else ""
        node.add(f"{obj['kind']} {where}  {health(obj['health'])}{reason}")
        shown += 1
    if folded:
        more = "more " if shown else ""
        plural = "s" if folded > 1 else ""
        node.add(f"[dim]{folded} {more}object{plural} Healthy (--tree shows them)[/dim]")


def progress_table(status: dict[str, Any]) -> Group:
    """One row per target: what `up --wait` shows while the workflow runs."""
    rows = [
        [
            step["name"],
            cluster["name"],
            release["component"],
            release["phase"],
            health(release["health"]),
            Text(release["reason"] or release["message"] or "", overflow="ellipsis"),
        ]
        for step in status["steps"]
        for cluster in step["clusters"]
        for release in cluster["releases"]
    ]
    head = (
        f"[bold]{status['name']}[/bold] revision {status['revision']}: "
        f"{status['phase']} {health(status['health'])}"
    )
    table: Table = grid(["step", "cluster", "component", "phase", "health", "detail"], rows)
    parts: list[Any] = [Text.from_markup(head), table]
    if status.get("next"):
        parts.append(Text.from_markup(f"[yellow]next:[/yellow] {status['next']}"))
    return Group(*parts)


def plan_tree(view: dict[str, Any], explain: str | None) -> Tree:
    root = Tree(f"plan for [bold]{view['application']}[/bold]")
    for step in view["steps"]:
        branch = root.add(f"step [bold]{step['name']}[/bold]")
        for target in step["targets"]:
            node = branch.add(
                f"cluster [bold]{target['cluster']}[/bold]  namespace {target['namespace']}  "
                f"release {target['release']}  {target['chart']}"
            )
            if target["error"]:
                node.add(f"[red]error:[/red] {target['error']}")
                continue
            set_here = target["provenance"]
            if set_here:
                rows = [
                    [path, "deleted" if v["deleted"] else _short(v["value"]), v["from"]]
                    for path, v in set_here.items()
                ]
                node.add(grid(["value", "set to", "by"], rows))
            else:
                node.add("[dim]chart defaults only[/dim]")
            if explain is not None:
                for path, entry in (target.get("explain") or {}).items():
                    lines = node.add(
                        f"[bold]{path}[/bold] (winner: {entry['winner'] or 'deleted'})"
                    )
                    for layer in entry["layers"]:
                        shown = "deleted" if layer.get("deleted") else _short(layer.get("value"))
                        lines.add(f"{layer['layer']}: {shown}")
            node.add(f"[dim]objects: {', '.join(target['objects'])}[/dim]")
    return root


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def apps_table(data: dict[str, Any]) -> Table:
    rows = [
        [
            a["name"],
            str(a["revision"]),
            a["publishVersion"] or "",
            a["phase"],
            health(a["health"]),
            ago(a["updated"]),
        ]
        for a in data["applications"]
    ]
    return grid(["name", "revision", "version", "phase", "health", "updated"], rows)


def history_table(data: dict[str, Any]) -> Table:
    rows = [
        [
            str(r["revision"]),
            r["publishVersion"] or "",
            ago(r["created"]),
            r["outcome"],
            f"rollback of {r['rollbackOf']}" if r["rollbackOf"] else r["source"],
        ]
        for r in data["revisions"]
    ]
    return grid(["revision", "version", "created", "outcome", "source"], rows)
