"""`flotilla repo ...`: add, list and remove chart repositories that need credentials.

Passwords and tokens are read from standard input, never from the command line, where
`ps` and shell history would show them; the hub keeps them in its 0600 store and never
shows them again.
"""

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.cli import output
from hub.cli.base import OutputOption, app, call, raise_invalid, run
from hub.cli.output import Format, emit, grid

if TYPE_CHECKING:
    from hub.model.views import RepositoryList, RepositoryView

repo_app = typer.Typer(
    help="Chart repositories and OCI registries that need credentials.", no_args_is_help=True
)
app.add_typer(repo_app, name="repo")


@repo_app.command("add")
def repo_add(
    name: Annotated[
        str, typer.Argument(help="Name to give it; an Application's `secretRef` names it.")
    ],
    url: Annotated[
        str,
        typer.Option(
            help="The repository (http(s)://host/path, where its index.yaml is) or the "
            "registry (oci://host[:port][/path])."
        ),
    ],
    username: Annotated[str | None, typer.Option(help="The user to log in as.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the user's password from stdin.")
    ] = False,
    token_stdin: Annotated[
        bool,
        typer.Option("--token-stdin", help="Read a bearer token from stdin (HTTP repositories)."),
    ] = False,
    output_format: OutputOption = Format.table,
) -> None:
    """Register a repository's credentials with the hub, once.

    Every chart fetched from a URL it covers is then fetched with them, whichever
    Application names it. The hub asks the repository first (its index.yaml, or a
    registry login) and stores nothing if the credentials are refused.

    \b
    Examples:
      flotilla repo add acme --url https://charts.acme.io --username ci --password-stdin < pass
      flotilla repo add ghcr --url oci://ghcr.io/acme --username bot --password-stdin < token

    A registry takes a token as the password; `--token-stdin` sends it as `Authorization:
    Bearer` to an HTTP repository. Name it from a helm component with `secretRef: acme`.
    """
    if password_stdin == token_stdin:
        raise_invalid("give --password-stdin (with --username) or --token-stdin")
    if password_stdin and not username:
        raise_invalid("--password-stdin needs --username")
    if token_stdin and username:
        raise_invalid("--token-stdin takes no --username")
    secret = _read_secret("token" if token_stdin else "password")
    body: dict[str, Any] = {"name": name, "url": url, "username": username}
    body["token" if token_stdin else "password"] = secret
    record: RepositoryView = run(call("POST", "/api/v1/repositories", body))
    if output_format is Format.table:
        who = f"as {record['username']}" if record["username"] else "with a token"
        output.console.print(
            f"repository [bold]{record['name']}[/bold] added: {record['url']} ({who})",
            highlight=False,
        )
    else:
        emit(record, output_format)


def _read_secret(what: str) -> str:
    """The first line of stdin (what `printf`, a file or `echo` gives); typed at a
    terminal, it is asked for without echo."""
    if sys.stdin.isatty():
        import getpass

        line = getpass.getpass(f"{what}: ")
    else:
        line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise_invalid(f"{what}: nothing on standard input")
    return line


def _repository_table(data: "RepositoryList") -> Any:
    rows = [
        [r["name"], r["kind"], r["url"], r["username"] or "-", r["auth"]]
        for r in data["repositories"]
    ]
    return grid(["name", "kind", "url", "username", "auth"], rows)


@repo_app.command("list")
def repo_list(output_format: OutputOption = Format.table) -> None:
    """Registered repositories, never their passwords or tokens.

    Each with its name, kind (http or oci), URL, user and how it logs in (`basic` or
    `token`)."""
    emit(run(call("GET", "/api/v1/repositories")), output_format, _repository_table)


@repo_app.command("remove")
def repo_remove(
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    output_format: OutputOption = Format.table,
) -> None:
    """Forget a repository and its credentials. Charts already fetched stay cached; an
    Application whose `secretRef` names it is refused at plan from now on."""
    result = run(call("DELETE", f"/api/v1/repositories/{name}"))
    if output_format is Format.table:
        output.console.print(f"repository {name} removed")
    else:
        emit(result, output_format)
