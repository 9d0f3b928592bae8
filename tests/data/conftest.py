"""Fixtures for the data tests: the generators live in datafixtures.py (a unique module name, so test
files can import them whatever other conftest.py files exist)."""

from __future__ import annotations

from pathlib import Path

import pytest
from datafixtures import PALETTE, make_coco, make_diffusiondb, make_flickr8k, write_image


@pytest.fixture
def flickr8k_src(tmp_path: Path) -> tuple[Path, dict]:
    src = tmp_path / "flickr8k_download"
    return src, make_flickr8k(src)


@pytest.fixture
def coco_src(tmp_path: Path) -> dict:
    return make_coco(tmp_path / "coco")


@pytest.fixture
def diffusiondb_src(tmp_path: Path) -> tuple[Path, dict]:
    src = tmp_path / "diffusiondb"
    src.mkdir()
    return src, make_diffusiondb(src)


@pytest.fixture
def folder_src(tmp_path: Path) -> Path:
    """6 images (one in a sub-folder), each with a same-name .txt caption."""
    src = tmp_path / "photos"
    for i in range(6):
        rel = f"sub/img{i}.png" if i == 5 else f"img{i}.png"
        write_image(src / rel, PALETTE[i])
        (src / rel).with_suffix(".txt").write_text(f"photo number {i}\n", encoding="utf-8")
    return src
