"""Manifests the integration tests apply themselves, built in one place."""

from __future__ import annotations

from typing import Any


def crd(group: str, kind: str = "Widget") -> dict[str, Any]:
    """A namespaced CustomResourceDefinition of `kind` in `group` that takes any fields: a
    kind of the test's own, new to the cluster."""
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
