"""`flotilla workflow ...`: resume, suspend, restart, rollback."""

from typing import Annotated

import typer

from hub.cli import output
from hub.cli.apps import follow
from hub.cli.base import (
    AppArgument,
    WaitOption,
    app,
    call,
    run,
)

workflow_app = typer.Typer(
    help="Drive a running workflow: resume, suspend, restart, rollback.", no_args_is_help=True
)
app.add_typer(workflow_app, name="workflow")


@workflow_app.command("resume")
def workflow_resume(
    name: AppArgument,
    wait: WaitOption = False,
) -> None:
    """Continue a suspended workflow, or retry a failed one.

    It approves a suspend step or an `auto: false` deploy step, advances every cluster's
    paused canary to its next step together (or cuts a timed pause short), or lifts an
    operator's suspend. On a failed workflow it retries what failed.

    Sent while a canary step is still moving (its pods coming up, traffic shifting), it
    approves the pause that step is heading for: the step goes on once its canary is ready
    everywhere, without stopping there. With nothing suspended or moving it is refused
    (exit code 4)."""
    result = run(call("POST", f"/api/v1/apps/{name}/workflow/resume", {}))
    output.console.print(f"application {name} resumed ({result['resumed']})")
    if wait:
        follow(name, result["revision"])


@workflow_app.command("suspend")
def workflow_suspend(name: AppArgument) -> None:
    """Pause a running workflow at the next step boundary."""
    run(call("POST", f"/api/v1/apps/{name}/workflow/suspend", {}))
    output.console.print(f"application {name} will suspend at the next step")


@workflow_app.command("restart")
def workflow_restart(name: AppArgument) -> None:
    """Retry what failed in the current revision. What succeeded is kept."""
    run(call("POST", f"/api/v1/apps/{name}/workflow/restart", {}))
    output.console.print(f"application {name} restarted")


@workflow_app.command("rollback")
def workflow_rollback(
    name: AppArgument,
    revision: Annotated[
        int | None, typer.Option(help="Revision to return to (default: the last that succeeded).")
    ] = None,
    wait: WaitOption = False,
) -> None:
    """Re-apply an earlier revision to every target. What later ones added is pruned."""
    result = run(call("POST", f"/api/v1/apps/{name}/workflow/rollback", {"revision": revision}))
    output.console.print(result["message"])
    if wait:
        follow(name, result["revision"])
