"""How YAML is read, everywhere in the hub: as Kubernetes reads it.

A date stays the string it was written as (PyYAML would make it a `datetime`, which is
neither JSON nor what Helm sends to the API server), for the Application file and for the
manifests Helm renders alike. The Application file is also refused on a duplicate key,
where YAML would let the last one win silently: a user's mistake, not Helm's output.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_UNTIMED = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# libyaml where installed: chart manifests and repository indexes can be megabytes.
_FAST_SAFE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ManifestLoader(_FAST_SAFE):  # type: ignore[valid-type,misc]
    """Safe YAML, dates left as strings: rendered manifests, repository indexes."""

    yaml_implicit_resolvers = _UNTIMED


class ApplicationLoader(yaml.SafeLoader):
    """Safe YAML, dates left as strings, a duplicate key an error. The pure-Python parser,
    whose messages (`line 3, column 5: ...`) the file's problems quote."""

    yaml_implicit_resolvers = _UNTIMED


def _refuse_duplicates(loader: ApplicationLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


ApplicationLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _refuse_duplicates
)
