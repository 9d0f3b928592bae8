"""Seeded train/validation/test splits by image.

Splitting happens over unique image keys (`file_name`), never over caption rows, so the references of one
image can never end up in two splits. Keys are sorted before the seeded shuffle, so the assignment depends
only on the set of images, the ratios and the seed - not on the order files were listed in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from vlgen.data.records import SPLITS, Record
from vlgen.errors import ConfigError

DEFAULT_RATIOS = (0.6, 0.2, 0.2)
DEFAULT_SEED = 42


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Parse `--split-ratios "0.6,0.2,0.2"` (train,validation,test); they must be >= 0 and sum to 1."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ConfigError(f"--split-ratios {text!r}: expected three numbers train,validation,test")
    try:
        ratios = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--split-ratios {text!r}: not numbers") from None
    check_ratios(ratios)
    return ratios  # type: ignore[return-value]


def check_ratios(ratios: Sequence[float]) -> None:
    if len(ratios) != 3 or any(not math.isfinite(r) or r < 0 for r in ratios):
        raise ConfigError(f"split ratios {tuple(ratios)}: need three non-negative numbers")
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise ConfigError(f"split ratios {tuple(ratios)} sum to {sum(ratios):g}, not 1")


def split_sizes(n: int, ratios: Sequence[float]) -> tuple[int, int, int]:
    """Largest-remainder rounding, so sizes always add up to n (e.g. 10 at 0.6/0.2/0.2 -> 6/2/2)."""
    raw = [n * r for r in ratios]
    sizes = [math.floor(x) for x in raw]
    by_remainder = sorted(range(3), key=lambda i: (-(raw[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes[0], sizes[1], sizes[2]


def assign_splits(
    keys: Iterable[str], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = DEFAULT_SEED
) -> dict[str, str]:
    """Map each unique key to 'train'/'validation'/'test'; deterministic in (set of keys, ratios, seed)."""
    check_ratios(ratios)
    ordered = sorted(set(keys))
    random.Random(seed).shuffle(ordered)
    n_train, n_val, _ = split_sizes(len(ordered), ratios)
    out = {}
    for i, key in enumerate(ordered):
        out[key] = SPLITS[0] if i < n_train else SPLITS[1] if i < n_train + n_val else SPLITS[2]
    return out


def split_records(
    records: Sequence[Record], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = DEFAULT_SEED
) -> list[Record]:
    """Give every record without a split one, by image; records that already have a split keep it."""
    todo = [r.file_name for r in records if r.split is None]
    assignment = assign_splits(todo, ratios, seed)
    for r in records:
        if r.split is None:
            r.split = assignment[r.file_name]
    return list(records)


def count_splits(records: Iterable[Record]) -> dict[str, int]:
    counts = {s: 0 for s in SPLITS}
    for r in records:
        counts[r.split or "none"] = counts.get(r.split or "none", 0) + 1
    return counts
