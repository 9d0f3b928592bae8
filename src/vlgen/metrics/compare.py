"""Two score sets side by side: value A, value B, change and relative change (the write-ups' Table 1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Below this a baseline is treated as zero: pycocoevalcap's BLEU of a zero-match corpus is ~1e-9..1e-12.
MIN_BASELINE = 1e-6


def compare_scores(
    a: Mapping[str, Any], b: Mapping[str, Any], keys: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """One row per metric: {metric, a, b, change, relative_change}; relative change is (b - a) / |a|.

    Missing or non-numeric values give None for the change; a (near-)zero baseline gives a None relative
    change (rather than inf, or the 10^11 % that pycocoevalcap's 1e-12 "zero" BLEU would give) so the result
    stays valid JSON and readable.
    """
    if keys is None:
        keys = [k for k in a if k in b]
    rows = []
    for key in keys:
        va, vb = a.get(key), b.get(key)
        num = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        change = vb - va if num else None  # type: ignore[operator]
        rel = change / abs(va) if num and abs(va) >= MIN_BASELINE else None  # type: ignore[operator]
        rows.append({"metric": key, "a": va, "b": vb, "change": change, "relative_change": rel})
    return rows
