"""Quantities parse to the values the API server stores for them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from clusters.quantity import parse_quantity

INT64_MAX = Decimal(2**63 - 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # plain numbers, in every shape <number> allows
        ("1", "1"),
        ("0", "0"),
        ("+2", "2"),
        ("-2", "-2"),
        ("0.5", "0.5"),
        (".5", "0.5"),
        ("5.", "5"),
        # decimal SI
        ("500m", "0.5"),
        ("1n", "0.000000001"),
        ("1u", "0.000001"),
        ("1k", "1000"),
        ("1M", "1e6"),
        ("1.5G", "1.5e9"),
        ("1T", "1e12"),
        ("1P", "1e15"),
        ("2E", "2e18"),
        ("-1m", "-0.001"),
        # binary SI
        ("1Ki", "1024"),
        ("16Mi", str(16 * 2**20)),
        ("1.5Gi", str(3 * 2**29)),
        ("1Ti", str(2**40)),
        ("1Pi", str(2**50)),
        ("1Ei", str(2**60)),
        ("0.5Ki", "512"),
        # decimal exponents; "E" followed by digits is one, a lone "E" is exa
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("12e-3", "0.012"),
        ("1.5e+2", "150"),
        # finer than nano rounds up, away from zero, as the API server does
        ("1.0000000001", "1.000000001"),
        ("0.30000000000000004", "0.300000001"),
        ("-0.0000000001", "-0.000000001"),
        ("1e-2147483647", "0.000000001"),
        # binary quantities are capped at the largest int64
        ("8Ei", str(INT64_MAX)),
        ("-9Ei", str(-INT64_MAX)),
        # no float ever rounds: more digits than a float or Decimal's default holds
        ("123456789012345678901234567890.5", "123456789012345678901234567890.5"),
        ("123456789012345678901234567.5k", "123456789012345678901234567500"),
        ("1.000000000000000000000000001Ei", f"{2**60}.000000002"),
        # JSON numbers in manifests
        (1, "1"),
        (0.25, "0.25"),
        (1e-07, "0.0000001"),
    ],
)
def test_quantities(value: Any, expected: str) -> None:
    assert parse_quantity(value) == Decimal(expected)


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "+",
        "1e",
        "1.5e3k",
        "1ki",
        "1KI",
        "1 Mi",
        " 1",
        "1Mi ",
        "abc",
        "1.2.3",
        "1e1.5",
        "1e2147483648",
        "0x10",
        "inf",
        "nan",
        float("nan"),
        True,
        None,
        [],
        {},
    ],
)
def test_what_is_no_quantity(value: Any) -> None:
    assert parse_quantity(value) is None


@pytest.mark.parametrize(
    ("written", "stored"),
    [("0.5", "500m"), ("1024Mi", "1Gi"), ("1e3", "1k"), ("1.5Gi", "1536Mi"), (0.1, "100m")],
)
def test_what_was_written_equals_its_canonical_form(written: Any, stored: str) -> None:
    assert parse_quantity(written) == parse_quantity(stored)
