"""Name shapes Kubernetes insists on: DNS labels for namespaces and the names objects are
derived from, and the "qualified name" of labels. Checked when a file is read, so that no
cluster is the first to refuse one."""

from __future__ import annotations

import re
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


DnsLabel = Annotated[str, AfterValidator(validate_dns_label)]
