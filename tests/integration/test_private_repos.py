"""Charts from repositories that need credentials (issue 11, section 4): an HTTP repository
behind basic auth and a distribution registry with htpasswd auth, both real servers on
127.0.0.1, deployed from to the real clusters; credentials registered once with
`flotilla repo add`, named by `secretRef`, and never printed or logged."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.chartrepo import ChartRepo, OciRegistry, basic_authorization
from e2e.hubproc import HubProcess, Result
from tests.fleet import Fleet
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster


def _repo_add(hub: HubProcess, name: str, url: str, username: str | None, secret: str) -> Result:
    """`flotilla repo add ... --password-stdin` (or, with no username, `--token-stdin`), the
    secret piped in as a script would."""
    argv = ["repo", "add", name, "--url", url]
    argv += ["--username", username, "--password-stdin"] if username else ["--token-stdin"]
    proc = subprocess.run(
        [sys.executable, "-m", "hub", *argv],
        env=hub.env,
        input=secret + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    hub.outputs += [proc.stdout, proc.stderr]
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _app(fleet: Fleet, url: str, *, repo_type: str = "helm", **component: Any) -> Path:
    """The fleet's three-environment application from `url`, its helm component's
    properties changed by `component` (a None removes the property)."""
    path = replace(fleet, repo_url=url).app()
    document = yaml.safe_load(path.read_text())
    properties = document["spec"]["components"][0]["properties"]
    properties["repoType"] = repo_type
    for key, value in component.items():
        if value is None:
            properties.pop(key, None)
        else:
            properties[key] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _running_everywhere(fleet: Fleet, version: str = "1.0.0") -> None:
    for cluster in fleet.clusters:
        assert fleet.image(cluster) == f"registry.local/canary-demo:{version}", cluster


def test_repo_add_checks_the_credentials_and_never_shows_them(
    hub: HubProcess, private_chart_repo: ChartRepo
) -> None:
    assert private_chart_repo.basic is not None
    user, password = private_chart_repo.basic
    url = private_chart_repo.url

    wrong = _repo_add(hub, "acme", url, user, "not-the-password")
    assert wrong.code == 2, wrong.stderr
    assert wrong.stderr.strip() == f"error: repository acme ({url}): credentials refused (HTTP 401)"
    assert hub.ok("repo", "list", "-o", "json").json() == {"repositories": []}

    added = _repo_add(hub, "acme", url, user, password)
    assert added.code == 0, added.stderr
    assert added.stdout.strip() == f"repository acme added: {url} (as {user})"
    again = _repo_add(hub, "acme", url, user, password)
    assert again.code == 4 and "already registered" in again.stderr

    listed = hub.ok("repo", "list", "-o", "json").json()
    assert_shape(listed, "repositories")
    (row,) = listed["repositories"]
    assert (row["name"], row["url"], row["kind"], row["username"], row["auth"]) == (
        "acme",
        url,
        "http",
        user,
        "basic",
    )
    table = hub.ok("repo", "list").stdout
    assert "acme" in table and "basic" in table

    assert hub.ok("repo", "remove", "acme").stdout.strip() == "repository acme removed"
    assert hub.cli("repo", "remove", "acme").code == 3

    token = "token-" + password
    private_chart_repo.require(token=token)
    assert _repo_add(hub, "acme", url, None, "not-the-token").code == 2
    with_token = _repo_add(hub, "acme", url, None, token)
    assert with_token.stdout.strip() == f"repository acme added: {url} (with a token)"
    (row,) = hub.ok("repo", "list", "-o", "json").json()["repositories"]
    assert (row["username"], row["auth"]) == (None, "token")
    assert f"Bearer {token}" in private_chart_repo.authorizations

    header = basic_authorization(user, password).split()[1]
    for secret in (password, header, token):
        assert secret not in hub.everything_printed(), "a credential reached output or the log"


def test_deploys_from_a_private_http_repository_until_its_credentials_are_refused(
    fleet: Fleet, private_chart_repo: ChartRepo
) -> None:
    assert private_chart_repo.basic is not None
    user, password = private_chart_repo.basic
    url = private_chart_repo.url

    unregistered = fleet.hub.cli("plan", "-f", str(_app(fleet, url, secretRef=None)))
    assert unregistered.code != 0
    assert f"repository {url} needs credentials (HTTP 401)" in unregistered.stderr
    assert "flotilla repo add NAME --url" in unregistered.stderr

    assert _repo_add(fleet.hub, "acme", url, user, password).code == 0
    up = fleet.up(_app(fleet, url, secretRef="acme"), "--wait")
    assert up.code == 0, up.stderr
    _running_everywhere(fleet)
    assert basic_authorization(user, password) in private_chart_repo.authorizations

    private_chart_repo.require(basic=(user, "the-password-was-rotated"))
    latest = _app(fleet, url, secretRef="acme", version=None)  # asks the index, not the cache
    refused = fleet.hub.cli("plan", "-f", str(latest))
    assert refused.code == 2, refused.stderr
    assert f"repository acme ({url}): credentials refused (HTTP 401)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert password not in fleet.hub.everything_printed()


def test_deploys_from_an_authenticated_oci_registry_until_its_user_is_removed(
    fleet: Fleet, private_oci_registry: OciRegistry
) -> None:
    ((user, password),) = private_oci_registry.users.items()
    url = private_oci_registry.url

    assert _repo_add(fleet.hub, "registry", url, user, "wrong-password").code == 2
    assert _repo_add(fleet.hub, "registry", url, user, password).code == 0
    (row,) = fleet.hub.ok("repo", "list", "-o", "json").json()["repositories"]
    assert (row["kind"], row["auth"]) == ("oci", "basic")

    up = fleet.up(_app(fleet, url, repo_type="oci", secretRef="registry"), "--wait")
    assert up.code == 0, up.stderr
    _running_everywhere(fleet)

    private_oci_registry.set_users({"someone-else": "another-password"})
    latest = _app(fleet, url, repo_type="oci", secretRef="registry", version=None)
    refused = fleet.hub.cli("plan", "-f", str(latest))
    assert refused.code == 2, refused.stderr
    assert f"repository registry ({url}): credentials refused (HTTP 401)" in refused.stderr
    assert password not in fleet.hub.everything_printed()
    logins = fleet.hub.home / "charts" / "logins"
    assert not logins.exists() or not any(logins.iterdir()), "a registry login outlived its fetch"


def test_a_secret_ref_naming_no_repository_is_refused_at_plan(
    fleet: Fleet, private_chart_repo: ChartRepo
) -> None:
    path = _app(fleet, private_chart_repo.url, secretRef="nope")
    refused = fleet.hub.cli("plan", "-f", str(path))
    assert refused.code == 2, refused.stderr
    assert refused.stderr.strip() == (
        f'error: {path}: spec.components[0].properties.secretRef: "nope" names no registered '
        "repository (registered: none); register it: `flotilla repo add nope --url "
        f"{private_chart_repo.url} --username USER --password-stdin`"
    )


def test_credentials_go_to_the_repository_only_not_where_its_index_points(
    fleet: Fleet, private_chart_repo: ChartRepo, chart_repo: ChartRepo
) -> None:
    """An index may list archives on another host: they are fetched without the
    repository's credentials."""
    assert private_chart_repo.basic is not None
    user, password = private_chart_repo.basic
    for archive in chart_repo.directory.glob("*.tgz"):  # the same bytes as the index says
        shutil.copyfile(archive, private_chart_repo.directory / archive.name)
    private_chart_repo.reindex(base_url=chart_repo.url)
    assert _repo_add(fleet.hub, "acme", private_chart_repo.url, user, password).code == 0

    planned = fleet.hub.cli("plan", "-f", str(_app(fleet, private_chart_repo.url)))
    assert planned.code == 0, planned.stderr
    assert basic_authorization(user, password) in private_chart_repo.authorizations
    assert basic_authorization(user, password) not in chart_repo.authorizations
