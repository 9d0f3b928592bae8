"""Seeded splits: by image, deterministic whatever the input order, sizes exact, ratios validated."""

from __future__ import annotations

import random

import pytest

from vlgen.data import Record, assign_splits, parse_ratios, split_records
from vlgen.data.splits import split_sizes
from vlgen.errors import ConfigError

KEYS = [f"img{i:03d}.jpg" for i in range(100)]


def test_same_result_for_any_input_order() -> None:
    shuffled = KEYS[:]
    random.Random(1).shuffle(shuffled)
    assert assign_splits(KEYS, seed=42) == assign_splits(shuffled, seed=42) == assign_splits(reversed(KEYS), seed=42)


def test_seed_changes_assignment_and_sizes_follow_ratios() -> None:
    a, b = assign_splits(KEYS, seed=42), assign_splits(KEYS, seed=43)
    assert a != b
    for split_of in (a, b):
        counts = {s: list(split_of.values()).count(s) for s in ("train", "validation", "test")}
        assert counts == {"train": 60, "validation": 20, "test": 20}
    custom = assign_splits(KEYS, (0.8, 0.1, 0.1), seed=0)
    assert list(custom.values()).count("train") == 80


@pytest.mark.parametrize(
    "n,ratios,expected",
    [
        (10, (0.6, 0.2, 0.2), (6, 2, 2)),
        (7, (0.6, 0.2, 0.2), (4, 2, 1)),
        (3, (1.0, 0.0, 0.0), (3, 0, 0)),
        (0, (0.6, 0.2, 0.2), (0, 0, 0)),
    ],
)
def test_split_sizes_add_up(n: int, ratios: tuple, expected: tuple) -> None:
    assert split_sizes(n, ratios) == expected


def test_split_records_never_leaks_an_image_and_keeps_given_splits() -> None:
    recs = [Record(k, [f"{k} caption {j}" for j in range(5)]) for k in KEYS]
    recs[0].split = "test"  # a split the source already gave is kept
    split_records(recs, seed=7)
    assert recs[0].split == "test"
    by_split: dict[str, set[str]] = {}
    for r in recs:
        by_split.setdefault(r.split, set()).add(r.file_name)  # type: ignore[arg-type]
    assert set(by_split) == {"train", "validation", "test"}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["validation"])
    assert sum(len(v) for v in by_split.values()) == len(KEYS)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("0.6,0.2", "three numbers"),
        ("a,b,c", "not numbers"),
        ("0.6,0.3,0.3", "sum to 1.2"),
        ("1.2,-0.1,-0.1", "non-neg"),
    ],
)
def test_bad_ratios_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_ratios(text)


def test_parse_ratios_ok() -> None:
    assert parse_ratios(" 0.8, 0.1 ,0.1") == (0.8, 0.1, 0.1)
