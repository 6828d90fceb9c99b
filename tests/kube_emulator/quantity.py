"""Resource quantities in canonical form, as the API server stores them.

The server parses every quantity (`spec.hard` of a ResourceQuota, LimitRange limits, container
resources) and writes it back canonically: `1000m` reads back as `1`, `0.5` as `500m`,
`2048Mi` as `2Gi`, `2000` as `2k`. A reconciler that compares what it sent with what it reads
must expect that, so the emulator does the same (apimachinery `resource.Quantity`).
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal, InvalidOperation, localcontext

_QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_SUFFIX_BY_EXPONENT = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_SUFFIX_BY_POWER = {power: suffix for suffix, power in _BINARY_SUFFIXES.items()}

QUANTITY_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def canonical_quantity(raw: object) -> str:
    """The canonical spelling of a quantity; ValueError (with apimachinery's message) if it is none."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ValueError(QUANTITY_ERROR)
    text = str(raw)
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(QUANTITY_ERROR)
    number, suffix = match.groups()
    with localcontext() as context:
        context.prec = 80
        try:
            amount = Decimal(number)
        except InvalidOperation:
            raise ValueError(QUANTITY_ERROR) from None
        if suffix in _BINARY_SUFFIXES:
            fmt, amount = "binary", amount * (Decimal(2) ** _BINARY_SUFFIXES[suffix])
        elif suffix in _DECIMAL_SUFFIXES:
            fmt, amount = "si", amount.scaleb(_DECIMAL_SUFFIXES[suffix])
        elif re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
            fmt, amount = "exponent", amount.scaleb(int(suffix[1:]))
        else:
            raise ValueError(QUANTITY_ERROR)
        # Precision stops at nano; anything finer is rounded away from zero.
        nanos = int(amount.scaleb(9).to_integral_value(rounding=ROUND_UP))
    if nanos == 0:
        return "0"
    sign, nanos = ("-" if nanos < 0 else ""), abs(nanos)
    if fmt == "binary" and nanos % 10**9 == 0 and nanos // 10**9 >= 1024:
        return sign + _binary(nanos // 10**9)
    return sign + _decimal(nanos, fmt)


def _binary(value: int) -> str:
    power = 0
    while value % 1024 == 0 and power < 60:
        value //= 1024
        power += 10
    return f"{value}{_SUFFIX_BY_POWER.get(power, '')}"


def _decimal(nanos: int, fmt: str) -> str:
    exponent = -9
    while nanos % 1000 == 0 and (fmt == "exponent" or exponent < 18):
        nanos //= 1000
        exponent += 3
    if fmt == "exponent":
        return f"{nanos}e{exponent}" if exponent else str(nanos)
    # A quantity given with a binary suffix that is small or fractional is shown in decimal SI.
    return f"{nanos}{_SUFFIX_BY_EXPONENT[exponent]}"


def canonical_resource_list(resources: object, field: str) -> dict[str, str]:
    """A `ResourceList` (name → quantity) in canonical form; ValueError naming the field otherwise."""
    if not isinstance(resources, dict):
        raise ValueError(f"{field}: expected a map of resource quantities")
    canonical = {}
    for name, value in resources.items():
        try:
            canonical[name] = canonical_quantity(value)
        except ValueError as error:
            raise ValueError(f"{field}.{name}: {error}") from None
    return canonical
