"""Name shapes Kubernetes insists on: DNS labels for namespaces and the names objects are
derived from, and the "qualified name" of labels. Checked when a file is read, so that no
cluster is the first to refuse one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

from placement.errors import PlacementError

# RFC 1123: a DNS label fits in 63 characters.
DNS_LABEL_MAX = 63

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
"""apimachinery's name shape, for label names and values: letters, digits, '-', '_' and '.',
starting and ending with a letter or digit."""


def validate_dns_label(name: str) -> str:
    if len(name) > DNS_LABEL_MAX or not _DNS_LABEL.fullmatch(name):
        raise PlacementError(
            f"{name!r} is not a DNS label (lower-case letters, digits and '-', starting and "
            f"ending with a letter or digit, at most {DNS_LABEL_MAX} characters)"
        )
    return name


# Helm's own limit: release names end up in labels and in Secret names with a suffix.
RELEASE_NAME_MAX = 53
_RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# `${cluster.name}`, `${cluster.labels.KEY}`: filled in per cluster by placement.
PLACEHOLDER = re.compile(r"\$\{cluster\.([^}]*)\}")


def validate_release_name(name: str) -> str:
    if len(name) > RELEASE_NAME_MAX or not _RELEASE_NAME.fullmatch(name):
        raise PlacementError(
            f"{name!r} is not a Helm release name (lower-case letters, digits, '-' and '.', "
            f"at most {RELEASE_NAME_MAX} characters)"
        )
    return name


def per_cluster(validate: Callable[[str], str]) -> Callable[[str], str]:
    """A name that may hold `${cluster...}` placeholders: checked now with a stand-in for
    each placeholder, and again per cluster once placement has filled them in."""

    def check(name: str) -> str:
        stand_in = PLACEHOLDER.sub("x", name)
        try:
            validate(stand_in)
        except PlacementError as e:  # name what the user wrote, not the stand-in
            raise PlacementError(str(e).replace(repr(stand_in), repr(name), 1)) from None
        return name

    return check


DnsLabel = Annotated[str, AfterValidator(validate_dns_label)]
PerClusterDnsLabel = Annotated[str, AfterValidator(per_cluster(validate_dns_label))]
PerClusterReleaseName = Annotated[str, AfterValidator(per_cluster(validate_release_name))]
