"""How application views print for people: the status tree, the plan, progress tables.

Scripts use `-o json|yaml` and get the hub's data unchanged; these renderings are only
for terminals, so they favour what an operator reads first: health, then what to do.
Command modules import this one at their top: rich is imported by the renderings that draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.cli.output import HEALTH_STYLE, ago, grid, health
from hub.model.phases import TargetPhase

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def status_tree(status: dict[str, Any], *, every_object: bool = False) -> Tree:
    """application -> step -> cluster -> release -> objects; healthy objects are folded
    into a count unless `every_object`, so the default view fits in a terminal."""
    from rich.tree import Tree

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
                for run in release.get("hooks", []):
                    rel.add(_hook_line(run))
                if release.get("crds"):
                    names = ", ".join(c["name"] for c in release["crds"])
                    rel.add(f"[dim]crds/ {names}: {release['crds'][0]['message']}[/dim]")
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


_HOOK_STYLE = {"Succeeded": "green", "Failed": "red", "Running": "cyan"}


def _hook_line(run: dict[str, Any]) -> str:
    """`hook pre-upgrade Job demo/demo-migrate  Succeeded  revision 2`, and why it failed."""
    style = _HOOK_STYLE.get(run["phase"], "white")
    where = f"{run['namespace']}/{run['name']}" if run["namespace"] else run["name"]
    why = f"  [dim]{run['message']}[/dim]" if run["message"] else ""
    return (
        f"hook {run['event']} {run['kind']} {where}  [{style}]{run['phase']}[/{style}]  "
        f"revision {run['revision']}{why}"
    )


_OUTCOME_STYLE = {"pass": "green", "fail": "red", "error": "yellow"}
_VERDICT_STYLE = {"passed": "green", "failed": "red", "errored": "red", "running": "cyan"}


def _measurement_line(m: dict[str, Any]) -> str:
    """`analysis error-rate = 0.012 (<0.05) pass  running: 2 passed, 0 failed`."""
    from rich.markup import escape

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
        drift = obj.get("drift")
        if obj["health"] == "Healthy" and not drift and not every_object:
            folded += 1
            continue
        where = f"{obj['namespace']}/{obj['name']}" if obj.get("namespace") else obj["name"]
        reason = f"  [dim]{obj['reason']}[/dim]" if obj.get("reason") else ""
        kept = "  [dim]resource-policy keep: prune and delete leave it[/dim]" if obj["keep"] else ""
        line = node.add(f"{obj['kind']} {where}  {health(obj['health'])}{reason}{kept}")
        if drift:
            _drift(line, drift)
        shown += 1
    if folded:
        more = "more " if shown else ""
        plural = "s" if folded > 1 else ""
        node.add(f"[dim]{folded} {more}object{plural} Healthy (--tree shows them)[/dim]")


def _drift(node: Tree, drift: dict[str, Any]) -> None:
    """An object that differs from what the hub applied: each field, both values, and who."""
    from rich.markup import escape

    what = node.add(f"[yellow]OutOfSync[/yellow]  [dim]{escape(drift['action'])}[/dim]")
    if drift["gone"]:
        what.add("deleted")
    for field in drift["fields"]:
        by = f"  [dim]by {escape(field['manager'])}[/dim]" if field["manager"] else ""
        what.add(
            f"{escape(field['path'])}: {escape(_value(field['live']))} "
            f"[dim](applied {escape(_value(field['applied']))})[/dim]{by}"
        )


def _value(value: Any) -> str:
    import json

    return "absent" if value is None else json.dumps(value)


@dataclass(frozen=True)
class _Progress:
    """Where one target is (a step's component on one cluster), or a step that has no
    clusters (suspend, check-metrics)."""

    step: str
    where: str
    """The cluster; `cluster/component` when the application has several components."""
    phase: str
    health: str
    canary: str
    detail: str

    def cells(self) -> list[str | Text]:
        """STEP, CLUSTER, PHASE (coloured by health: one column less to fit), CANARY, DETAIL."""
        from rich.text import Text

        phase = Text(self.phase, style=HEALTH_STYLE.get(self.health, ""))
        return [self.step, self.where, phase, self.canary, Text(self.detail)]

    def line(self) -> str:
        """`deploy-prod prod-eu: applying  Progressing  canary 1/2 upgrading 0%  ...`"""
        canary = f"canary {self.canary}" if self.canary else ""
        said = (self.phase, self.health, canary, self.detail)
        return f"{self.step} {self.where}".rstrip() + ": " + "  ".join(p for p in said if p)


PROGRESS_COLUMNS = ["step", "cluster", "phase", "canary", "detail"]


def _progress(status: dict[str, Any]) -> dict[tuple[str, str], _Progress]:
    """By (step, where), in the order of the steps."""
    components = {
        release["component"]
        for step in status["steps"]
        for cluster in step["clusters"]
        for release in cluster["releases"]
    }
    rows: dict[tuple[str, str], _Progress] = {}
    for step in status["steps"]:
        if not step["clusters"]:
            rows[step["name"], ""] = _Progress(
                step["name"], "", step["phase"], "", "", step["message"]
            )
        for cluster in step["clusters"]:
            for release in cluster["releases"]:
                where = cluster["name"]
                if len(components) > 1:
                    where += f"/{release['component']}"
                rows[step["name"], where] = _Progress(
                    step["name"],
                    where,
                    release["phase"],
                    release["health"],
                    _canary_progress(release["rollout"]),
                    _detail(release),
                )
    return rows


def _detail(release: dict[str, Any]) -> str:
    """Why a target is where it is. A moving canary's own note repeats its CANARY cell,
    so it shows what the canary's pods wait for instead; else a failure's message, what
    the objects wait for, or the engine's note."""
    if release["rollout"] is not None and release["phase"] != TargetPhase.FAILED:
        return str(release["rollout"]["canary"])
    return str(release["reason"] or release["message"])


def _canary_progress(rollout: dict[str, Any] | None) -> str:
    """`1/2 traffic-routing 20%`: the canary step, its stage, its share of traffic."""
    if rollout is None:
        return ""
    weight = f"{rollout['weight']}%" if rollout["weight"] is not None else "headers"
    return f"{rollout['step']} {rollout['stage']} {weight}"


def _progress_head(status: dict[str, Any]) -> Text:
    from rich.text import Text

    return Text.from_markup(
        f"[bold]{status['name']}[/bold] revision {status['revision']}: "
        f"{status['phase']} {health(status['health'])}"
    )


def _next(status: dict[str, Any]) -> Text | None:
    from rich.text import Text

    return Text.assemble(("next:", "yellow"), " ", status["next"]) if status["next"] else None


def progress_table(status: dict[str, Any]) -> Group:
    """What `up --wait` redraws on a terminal: one line per target, cut to the width."""
    from rich.console import Group

    rows = [row.cells() for row in _progress(status).values()]
    table = grid(PROGRESS_COLUMNS, rows, one_line=True)
    return Group(*(part for part in (_progress_head(status), table, _next(status)) if part))


class ProgressLog:
    """What `up --wait` prints where nothing can be redrawn (a pipe, a CI log): the
    application's line, a target's line or the next action each time it changes."""

    def __init__(self) -> None:
        self._shown: dict[object, str] = {}

    def changes(self, status: dict[str, Any]) -> list[str]:
        lines: dict[object, str] = {"head": _progress_head(status).plain}
        lines |= {key: row.line() for key, row in _progress(status).items()}
        if (after := _next(status)) is not None:
            lines["next"] = after.plain
        changed = [line for key, line in lines.items() if self._shown.get(key) != line]
        self._shown = lines
        return changed


def plan_tree(view: dict[str, Any], explain: str | None) -> Tree:
    from rich.markup import escape
    from rich.tree import Tree

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
            if target["dependencies"]:
                node.add(f"fetched dependencies: {escape(', '.join(target['dependencies']))}")
            if target["usesLookup"]:
                templates = escape(", ".join(target["usesLookup"]))
                node.add(f"[yellow]uses lookup[/yellow] (finds nothing here): {templates}")
            for warning in target["warnings"]:
                node.add(f"[yellow]warning:[/yellow] {escape(warning)}")
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
