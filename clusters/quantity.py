"""Kubernetes resource quantities ("500m", "1.5Gi", "1e3") as numbers.

The API server stores a quantity in its canonical form, not as written: "0.5" comes
back as "500m", "1024Mi" as "1Gi". Whoever compares what they applied with what the
cluster has must compare values, and that takes parsing the quantity syntax
(k8s.io/apimachinery's resource.Quantity) the way the API server does.

Pure: exact decimal arithmetic, no floats, no I/O.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal
from typing import Any

# <signedNumber> and one optional suffix: a decimal exponent, a binary or a decimal SI
# prefix. The exponent is tried first, so "1E3" is 1000 and a lone "1E" is 10^18.
_SYNTAX = re.compile(
    r"(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:[eE](?P<exponent>[+-]?\d+)|(?P<suffix>[KMGTPE]i|[numkMGTPE]))?"
)
_POWER_OF_TEN = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_POWER_OF_1024 = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
# Go keeps a quantity's scale in an int32: no larger exponent makes a quantity.
_MAX_EXPONENT = 2**31 - 1
# The API server caps binary quantities at the largest int64, and leaves decimal ones.
_MAX_BINARY = Decimal(2**63 - 1)
# It keeps nine fractional digits and rounds finer values up, away from zero (asking for
# a little of a resource must not become asking for none): "1.0000000001" is 1000000001n.
_NANO_EXPONENT = -9
_NANO = Decimal(1).scaleb(_NANO_EXPONENT)


def parse_quantity(value: Any) -> Decimal | None:
    """The value of a Kubernetes quantity, as the API server would store it; None if
    `value` is not a quantity. Manifests may give quantities as JSON numbers: so may we."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    match = _SYNTAX.fullmatch(str(value))
    if match is None:
        return None
    number, exponent, suffix = match.group("number", "exponent", "suffix")
    power = int(exponent) if exponent else _POWER_OF_TEN.get(suffix or "", 0)
    if abs(power) > _MAX_EXPONENT:
        return None
    amount = Decimal(f"{number}e{power}")  # built from a string: exact
    if suffix in _POWER_OF_1024:
        factor = Decimal(1024) ** _POWER_OF_1024[suffix]  # at most 19 digits
        amount = amount.fma(factor, 0, _precise(amount, 20))
        if amount.copy_abs() > _MAX_BINARY:
            amount = _MAX_BINARY.copy_sign(amount)
    places = amount.as_tuple().exponent  # an int: the amount is finite
    if isinstance(places, int) and places < _NANO_EXPONENT:
        amount = amount.quantize(_NANO, decimal.ROUND_UP, _precise(amount, 11))
    return amount


def _precise(amount: Decimal, extra: int) -> decimal.Context:
    """A context with room for `amount`'s integer digits and `extra` more, so that an
    operation on it is exact (Decimal's default rounds to 28 significant digits)."""
    digits = max(amount.adjusted() + 1, len(amount.as_tuple().digits), 1)
    return decimal.Context(prec=digits + extra, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
