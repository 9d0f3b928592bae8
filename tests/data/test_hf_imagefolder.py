"""Our datasets load with `datasets.load_dataset("imagefolder", data_dir=...)` unchanged, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlgen.cli import main
from vlgen.data import load_records
from vlgen.data.synth import synth_dataset


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))  # never touch the user's cache


def _load(data_dir: Path):
    import datasets

    return datasets.load_dataset("imagefolder", data_dir=str(data_dir), split="train")


def test_synth_dataset_loads_as_imagefolder(tmp_path: Path) -> None:
    synth_dataset(tmp_path / "ds", 12, seed=0, progress=False)
    ds = _load(tmp_path / "ds")
    ours = load_records(tmp_path / "ds")
    assert len(ds) == 12 and set(ds.column_names) == {"image", "text", "split"}
    assert ds[3]["text"] == ours[3].caption and ds[3]["split"] == ours[3].split
    assert ds[3]["image"].size == (64, 64)


def test_multi_reference_import_loads_as_imagefolder(flickr8k_src, tmp_path: Path) -> None:
    src, _ = flickr8k_src
    assert main(["data", "import", "flickr8k", str(src), str(tmp_path / "ds")]) == 0
    ds = _load(tmp_path / "ds")
    ours = {r.captions[0]: r for r in load_records(tmp_path / "ds")}
    assert len(ds) == 10 and all(len(t) == 5 for t in ds["text"])  # list-of-references column
    row = ds[0]
    assert ours[row["text"][0]].captions == row["text"] and row["image"].size == (8, 8)
