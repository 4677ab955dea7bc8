"""Numbers for people: one way to write them on every page, chart and explanation
(64.78M, 12.5k, 0.0123, never 6.47781e+07). static/format.js in the web app follows the same
rule for the charts."""

from __future__ import annotations

import math

_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(x: float | None, digits: int = 4) -> str:
    """`digits` significant digits with a k/M/G/T suffix from a thousand on; below 0.001 the
    exponent form (a tiny number has no better word); '-' for None."""
    if x is None or not math.isfinite(x):
        return "-" if x is None else str(x)
    x = float(f"{x:.{digits}g}")  # rounded first, so that 999.96 reads 1k, not 1000
    a = abs(x)
    for size, suffix in _SI:
        if a >= size:
            return f"{_trim(x / size, digits)}{suffix}"
    if a != 0 and a < 1e-3:
        return f"{x:.{max(1, digits - 2)}e}"
    return _trim(x, digits)


def _trim(x: float, digits: int) -> str:
    """x with `digits` significant digits, without exponent or trailing zeros."""
    a = abs(x)
    decimals = max(0, digits - 1 - (math.floor(math.log10(a)) if a else 0))
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
