"""`flotilla diff`: what `up` would change on each cluster, or how the clusters drifted."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode

import typer

from hub.cli import output
from hub.cli.base import OutputOption, app, call, raise_invalid, read_app, run
from hub.cli.completion import complete_apps, complete_clusters
from hub.cli.output import Format, emit
from hub.errors import ClusterUnavailable

if TYPE_CHECKING:
    from rich.text import Text

CHANGES = 1
"""kubectl diff's convention: 0 nothing would change, 1 something would; errors above 1."""
FAILED = 7
"""A failure the hub did not classify (its log says why); never 1, which means changes."""
INTERRUPTED = 130
MARKS = {
    "created": ("+", "green"),
    "changed": ("~", "yellow"),
    "pruned": ("-", "red"),
    "apply-once": ("=", "blue"),
}
LINE_STYLES = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


@app.command()
def diff(
    application: Annotated[
        str | None,
        typer.Argument(
            help="A deployed application: diff its stored revision instead of a file.",
            autocompletion=complete_apps,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Application file: what `up -f FILE` would change."),
    ] = None,
    revision: Annotated[
        int | None,
        typer.Option(help="With APP: the revision to compare with (default: the current one)."),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(help="Only this cluster.", autocompletion=complete_clusters),
    ] = None,
    output_format: OutputOption = Format.table,
) -> None:
    """Show what `up` would change on each cluster.

    The clusters are asked: every object goes through a server-side apply in dry-run mode
    (`dryRun=All`, the same field manager and labels as a real deploy) and the answer is
    compared with the live object.

    Per cluster and release, each object is created, changed (a unified diff), pruned
    (the new render no longer holds it), unchanged, or left alone by the application's
    apply-once policy. Fields the server defaults, or that other field managers own, do
    not show. Secret values never show: a changed key reads `(redacted: old value)` ->
    `(redacted: new value)`.

    `flotilla diff APP [--revision N]` needs no file: it shows how the clusters drifted
    from a stored revision, rendered from the charts that revision pinned.

    \b
    Examples:
      flotilla diff -f app.yaml                  # before `up -f app.yaml`
      flotilla diff -f app.yaml --cluster prod-eu -o json
      flotilla diff shop                         # drift from the running revision
      flotilla diff shop --revision 3

    Exit codes, as `kubectl diff`: 0 nothing would change, 1 something would. A cluster
    that cannot be reached is named and the others are diffed, then the command exits 5
    (an error outranks a change, as in kubectl). Other failures: 2 invalid input (the
    file, flags), 3 not found (application, revision, cluster), 6 no hub, 7 the hub failed
    (see its log).
    """
    if (application is None) == (file is None):
        raise_invalid("diff: give an application file (-f FILE) or an application name")
    if revision is not None and application is None:
        raise_invalid("--revision: only with an application name (flotilla diff APP)")
    if file is not None:
        view = _ask("POST", "/api/v1/diff", read_app(file) | {"cluster": cluster})
    else:
        query = {k: v for k, v in (("revision", revision), ("cluster", cluster)) if v is not None}
        path = f"/api/v1/apps/{quote(str(application), safe='')}/diff"
        view = _ask("GET", f"{path}?{urlencode(query)}" if query else path)
    if output_format is Format.table:
        # Unwrapped: a diff line folded at the console's width is a line that is not there.
        output.console.print(_printed(view), soft_wrap=True, highlight=False)
    else:
        emit(view, output_format)
    if any(c["error"] for c in view["clusters"]):
        raise typer.Exit(ClusterUnavailable.exit_code)
    if view["changes"]:
        raise typer.Exit(CHANGES)


def _ask(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """One hub call whose failures never exit 1: 1 says that something would change."""
    try:
        view: dict[str, Any] = run(call(method, path, body))
    except typer.Exit as e:
        raise typer.Exit(FAILED if e.exit_code == CHANGES else e.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None
    return view


def _printed(view: dict[str, Any]) -> "Text":
    """Cluster, release, then each object that would change with its diff; coloured on
    a terminal, plain when piped (the console decides, NO_COLOR too)."""
    from rich.text import Text

    out = Text()
    for cluster in view["clusters"]:
        out.append(f"cluster {cluster['name']}", style="bold")
        if cluster["error"]:
            out.append(f": could not be diffed: {cluster['error']}\n", style="red")
            continue
        out.append("\n")
        for release in cluster["releases"]:
            out.append(
                f"  release {release['release']} (component {release['component']}, "
                f"namespace {release['namespace']})\n"
            )
            unchanged = 0
            for obj in release["objects"]:
                if obj["action"] == "unchanged":
                    unchanged += 1
                    continue
                mark, style = MARKS[obj["action"]]
                where = f"{obj['namespace']}/{obj['name']}" if obj["namespace"] else obj["name"]
                out.append(f"    {mark} {obj['kind']} {where}: {obj['action']}\n", style=style)
                for line in obj["diff"].splitlines():
                    out.append(f"      {line}\n", style=_line_style(line))
            if unchanged:
                out.append(f"    {unchanged} unchanged\n", style="dim")
    failed = sum(1 for c in view["clusters"] if c["error"])
    summary = f"{view['changes']} object(s) would change" if view["changes"] else "no changes"
    if failed:
        summary += f"; {failed} cluster(s) could not be diffed"
    out.append(summary, style="bold")
    return out


def _line_style(line: str) -> str:
    return next((style for prefix, style in LINE_STYLES if line.startswith(prefix)), "")
