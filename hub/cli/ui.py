"""`flotilla ui`: a one-time link that signs a browser in to the hub's web view."""

from typing import Any

from hub.cli import output
from hub.cli.base import app, run
from hub.cli.client import HubClient


@app.command()
def ui() -> None:
    """Print a link that signs a browser in to the web view.

    The view is read-only: the fleet, the applications, each one's tree, canaries, analysis
    and events, live. The link holds a random code the hub issued for this command, not the
    token: it works once, within a minute. The browser then keeps a session cookie. Without
    a link, the page at the hub's address asks for the token (`$FLOTILLA_HOME/token`).
    """
    link, seconds = run(_link)
    output.console.print(link, highlight=False, soft_wrap=True)
    output.errors.print(f"one-time sign-in link: valid for {seconds} s, once", highlight=False)


def _link() -> tuple[str, Any]:
    client = HubClient.from_home()
    issued = client.request("POST", "/api/v1/ui/signin-codes", {})
    return f"{client.url}{issued['path']}", issued["expiresIn"]
