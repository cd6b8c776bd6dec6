"""Repositories that need credentials, their pure parts: which registered repository covers
a chart's URL, where its credentials may be sent, how `secretRef` is checked at plan, what
`repo add` refuses before asking anyone, and the store's rows (on real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hub.charts.repositories import authorization
from hub.errors import Conflict, InvalidInput, NotFound
from hub.format import load_application
from hub.format.problems import format_location, repository_problems
from hub.model.records import RepositoryRecord, covering, same_origin
from hub.redaction import Scrubber
from hub.service.repositories import Repositories, repository_secrets
from hub.state.store import SqliteStore


def _record(name: str, url: str, *, auth: str = "basic") -> RepositoryRecord:
    kind = "oci" if url.startswith("oci://") else "http"
    return RepositoryRecord(name, url, kind, auth, "ci", "s3cret-password")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("registered", "url", "covered"),
    [
        ("https://charts.acme.io", "https://charts.acme.io", True),
        ("https://charts.acme.io/", "https://charts.acme.io", True),
        ("https://charts.acme.io/stable", "https://charts.acme.io/stable/", True),
        ("https://charts.acme.io/stable", "https://charts.acme.io/stable/team", True),
        ("https://charts.acme.io/stable", "https://charts.acme.io/stable-old", False),
        ("https://charts.acme.io/stable", "https://charts.acme.io", False),
        ("https://charts.acme.io", "http://charts.acme.io", False),
        ("https://charts.acme.io", "https://charts.acme.io:8443", False),
        ("https://charts.acme.io", "https://evil.io/charts.acme.io", False),
        ("oci://127.0.0.1:5000", "oci://127.0.0.1:5000/charts", True),
        ("oci://ghcr.io/acme", "oci://GHCR.io/acme/charts", True),
        ("oci://ghcr.io/acme", "https://ghcr.io/acme", False),
    ],
)
def test_a_repository_covers_its_own_url_and_the_paths_under_it(
    registered: str, url: str, covered: bool
) -> None:
    assert _record("r", registered).covers(url) is covered


def test_the_closest_registered_repository_covers_a_url() -> None:
    host = _record("host", "oci://ghcr.io")
    team = _record("team", "oci://ghcr.io/acme")
    assert covering([host, team], "oci://ghcr.io/acme/charts") is team
    assert covering([host, team], "oci://ghcr.io/other") is host
    assert covering([host, team], "https://charts.acme.io") is None


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://127.0.0.1:8879/index.yaml", True),
        ("http://127.0.0.1:8879/charts/a-1.0.0.tgz", True),
        ("http://127.0.0.1:8880/a-1.0.0.tgz", False),
        ("https://127.0.0.1:8879/a-1.0.0.tgz", False),
        ("http://cdn.example.com/a-1.0.0.tgz", False),
    ],
)
def test_credentials_go_only_to_the_repository_origin(url: str, sent: bool) -> None:
    assert same_origin(url, "http://127.0.0.1:8879/") is sent


def test_the_authorization_header_and_what_the_scrubber_learns() -> None:
    basic = _record("r", "https://charts.acme.io")
    token = _record("t", "https://charts.acme.io", auth="token")
    assert authorization(basic) == "Basic Y2k6czNjcmV0LXBhc3N3b3Jk"  # ci:s3cret-password
    assert authorization(token) == "Bearer s3cret-password"
    scrubber = Scrubber()
    scrubber.add(repository_secrets(basic))
    line = scrubber.scrub("GET / Authorization: Basic Y2k6czNjcmV0LXBhc3N3b3Jk pw=s3cret-password")
    assert "s3cret" not in line and "Y2k6" not in line
    assert "s3cret-password" not in repr(basic)


APP = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: shop}
spec:
  components:
    - name: web
      type: helm
      properties: {url: "https://charts.acme.io/stable", chart: web, secretRef: acme}
  policies:
    - name: eu
      type: override
      properties:
        components:
          - name: web
            properties: {url: "https://mirror.acme.io", secretRef: mirror}
"""


def _problems(text: str, registered: list[RepositoryRecord]) -> list[str]:
    app = load_application(text, "shop.yaml")
    return [f"{format_location(p.path)}: {p.message}" for p in repository_problems(app, registered)]


def test_secret_refs_name_registered_repositories_that_cover_their_url() -> None:
    registered = [
        _record("acme", "https://charts.acme.io"),
        _record("mirror", "https://mirror.acme.io"),
    ]
    assert _problems(APP, registered) == []


def test_a_secret_ref_naming_nothing_or_the_wrong_repository_is_refused_by_field() -> None:
    component = "spec.components[0].properties.secretRef"
    patch = "spec.policies[0].properties.components[0].properties.secretRef"
    assert _problems(APP, []) == [
        f'{component}: "acme" names no registered repository (registered: none); register '
        "it: `flotilla repo add acme --url https://charts.acme.io/stable --username USER "
        "--password-stdin`",
        f'{patch}: "mirror" names no registered repository (registered: none); register it: '
        "`flotilla repo add mirror --url https://mirror.acme.io --username USER "
        "--password-stdin`",
    ]
    elsewhere = [_record("acme", "https://other.io"), _record("mirror", "https://mirror.acme.io")]
    assert _problems(APP, elsewhere) == [
        f'{component}: repository "acme" is registered for https://other.io, which does not '
        "cover url https://charts.acme.io/stable"
    ]
    closer = [*elsewhere[1:], _record("acme", "https://charts.acme.io")]
    closer.append(_record("stable", "https://charts.acme.io/stable"))
    assert _problems(APP, closer) == [
        f"{component}: url https://charts.acme.io/stable is covered more closely by "
        'repository "stable" (https://charts.acme.io/stable), whose credentials a fetch '
        "uses: name that one"
    ]


def test_a_local_chart_takes_no_secret_ref() -> None:
    local = yaml.safe_load(APP)
    local["spec"]["policies"] = []
    local["spec"]["components"][0]["properties"] = {
        "repoType": "local",
        "url": "./charts",
        "chart": "web",
        "secretRef": "acme",
    }
    assert _problems(yaml.safe_dump(local), [_record("acme", "https://charts.acme.io")]) == [
        "spec.components[0].properties.secretRef: a local chart directory needs no "
        "credentials: remove secretRef"
    ]


class _UnaskedCharts:
    """`repo add` must refuse these before it asks any repository."""

    async def check_credentials(self, record: RepositoryRecord) -> None:
        raise AssertionError(f"{record.name}: the repository was asked")


@pytest.mark.parametrize(
    ("name", "url", "credentials", "refusal"),
    [
        ("Acme", "https://charts.acme.io", {"username": "ci", "password": "p"}, "DNS label"),
        ("acme", "ftp://charts.acme.io", {"username": "ci", "password": "p"}, "expected an"),
        ("acme", "https://u:p@charts.acme.io", {"username": "u", "password": "p"}, "not in the"),
        ("acme", "https://charts.acme.io", {"password": "p"}, "--username USER"),
        ("acme", "https://charts.acme.io", {"username": "ci", "password": ""}, "empty"),
        ("acme", "https://charts.acme.io", {"username": "c:i", "password": "p"}, "hold ':'"),
        ("acme", "https://charts.acme.io", {"username": "ci", "token": "t"}, "not both"),
        ("acme", "oci://ghcr.io/acme", {"token": "t"}, "give a token as the password"),
    ],
)
async def test_repo_add_refuses_bad_input_before_asking_the_repository(
    tmp_path: Path, name: str, url: str, credentials: dict[str, str], refusal: str
) -> None:
    store = SqliteStore(tmp_path / "store.db")
    repositories = Repositories(store, Scrubber(), _UnaskedCharts())  # type: ignore[arg-type]
    given = {"username": None, "password": None, "token": None} | credentials
    with pytest.raises(InvalidInput, match=refusal):
        await repositories.add(name, url, **given)
    assert store.repositories() == []


def test_the_store_keeps_repositories_and_forgets_them(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    record = _record("acme", "https://charts.acme.io")
    store.add_repository(record)
    with pytest.raises(Conflict, match="already registered"):
        store.add_repository(record)
    store.close()
    assert SqliteStore(path).repositories() == [record]
    assert path.stat().st_mode & 0o777 == 0o600
    again = SqliteStore(path)
    again.delete_repository("acme")
    assert again.repositories() == []
    with pytest.raises(NotFound):
        again.delete_repository("acme")
