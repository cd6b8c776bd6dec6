"""The README's JSON shapes and the typed views are the same, field for field."""

from __future__ import annotations

from typing import get_type_hints

import pytest

from hub.model.views import SHAPES
from tests.shapes import assert_shape, documented_shapes


def test_every_typed_shape_is_documented_and_every_documented_shape_typed() -> None:
    assert set(documented_shapes()) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_documented_fields_are_the_typed_fields_in_order(name: str) -> None:
    assert documented_shapes()[name] == list(get_type_hints(SHAPES[name]))


def test_an_answer_with_a_field_too_many_or_too_few_is_caught() -> None:
    row = {
        "revision": 1,
        "publishVersion": None,
        "created": None,
        "finished": None,
        "outcome": "running",
        "rollbackOf": None,
        "source": "app.yaml",
    }
    history = {"name": "a", "revisions": [row], "events": []}
    assert_shape(history, "history")
    with pytest.raises(AssertionError, match=r"\$\.revisions\[0\]: fields \['extra'\]"):
        assert_shape(history | {"revisions": [row | {"extra": 1}]}, "history")
    with pytest.raises(AssertionError, match="fields \\['events'\\]"):
        assert_shape({"name": "a", "revisions": []}, "history")
