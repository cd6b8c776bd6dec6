"""`flotilla`: the command line. A thin edge: every command but `serve` is one hub call.

Verbs follow `vela` so KubeVela users feel at home. Every read command takes
`-o table|json|yaml`; every failure prints one line to stderr and exits non-zero with the
code of its FlotillaError (2 invalid input, 3 not found, 4 conflict, 5 cluster
unavailable, 6 no hub).
"""

from hub.cli import apps, cluster, events, local, workflow
from hub.cli.base import app

# The command modules register themselves on `app` when imported.
__all__ = ["app", "apps", "cluster", "events", "local", "main", "workflow"]


def main() -> None:
    app()
