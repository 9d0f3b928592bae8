"""Two score sets side by side: value A, value B, change and relative change (the write-ups' Table 1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def compare_scores(
    a: Mapping[str, Any], b: Mapping[str, Any], keys: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """One row per metric: {metric, a, b, change, relative_change}; relative change is (b - a) / |a|.

    Missing or non-numeric values give None for the change; a zero baseline gives a None relative change
    (rather than inf) so the result stays valid JSON.
    """
    if keys is None:
        keys = [k for k in a if k in b]
    rows = []
    for key in keys:
        va, vb = a.get(key), b.get(key)
        num = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        change = vb - va if num else None  # type: ignore[operator]
        rel = change / abs(va) if num and va != 0 else None  # type: ignore[operator]
        rows.append({"metric": key, "a": va, "b": vb, "change": change, "relative_change": rel})
    return rows
