"""`flotilla`: the command line. A thin edge: every command but `serve` is one hub call.

Verbs follow `vela` so KubeVela users feel at home. Every read command takes
`-o table|json|yaml`; every failure prints one line to stderr and exits non-zero with the
code of its FlotillaError (2 invalid input, 3 not found, 4 conflict, 5 cluster
unavailable, 6 no hub).
"""

from hub.cli import apps, cluster, diff, events, local, repo, ui, workflow
from hub.cli.base import app
from hub.cli.completion import PROG_NAME

# The command modules register themselves on `app` when imported.
__all__ = [
    "app",
    "apps",
    "cluster",
    "diff",
    "events",
    "local",
    "main",
    "repo",
    "ui",
    "workflow",
]


def main() -> None:
    # Named, not guessed from argv: `python -m hub` must answer the same completion
    # variable (_FLOTILLA_COMPLETE) and show the same usage lines as `flotilla`.
    app(prog_name=PROG_NAME)
