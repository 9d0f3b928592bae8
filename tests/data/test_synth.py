"""Synthetic scenes: bit-identical per seed, captions from a small regular grammar that match the pixels."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from vlgen.data import load_image, load_records
from vlgen.data.synth import COLORS, render_scene, sample_scene, synth_dataset, vocabulary

GROUP = r"(a|two) (small|large) (red|green|blue|yellow|purple) (circle|square|triangle|diamond)s?"
CAPTION = re.compile(rf"^{GROUP}( (above|to the left of) {GROUP})?$")


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name != "import.json"}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    synth_dataset(tmp_path / "a", 40, seed=3, progress=False)
    synth_dataset(tmp_path / "b", 40, seed=3, progress=False)
    synth_dataset(tmp_path / "c", 40, seed=4, progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 41 and a == b  # 40 PNGs + metadata.jsonl, byte for byte
    assert a["metadata.jsonl"] != c["metadata.jsonl"] and a["000000.png"] != c["000000.png"]


def test_prefix_stable_and_splits(tmp_path: Path) -> None:
    small = synth_dataset(tmp_path / "s", 20, seed=1, progress=False)
    big = synth_dataset(tmp_path / "b", 50, seed=1, progress=False)
    assert [r.captions for r in small] == [r.captions for r in big[:20]]  # image i depends on (seed, i) only
    counts = {s: sum(r.split == s for r in load_records(tmp_path / "b")) for s in ("train", "validation", "test")}
    assert counts == {"train": 30, "validation": 10, "test": 10}


def test_captions_follow_the_grammar_with_a_small_vocabulary(tmp_path: Path) -> None:
    recs = synth_dataset(tmp_path / "d", 300, seed=0, progress=False)
    words = {w for r in recs for w in r.caption.split()}
    assert all(CAPTION.match(r.caption) for r in recs), [r.caption for r in recs if not CAPTION.match(r.caption)]
    assert words <= set(vocabulary()) and len(vocabulary()) <= 30
    assert len({r.caption for r in recs}) > 100  # varied, not a handful of templates
    assert any(" above " in r.caption for r in recs) and any(" to the left of " in r.caption for r in recs)


@pytest.mark.parametrize("style", ["plain", "glossy"])
def test_pixels_show_what_the_caption_says(style: str) -> None:
    """At each object's centre the pixel has the caption's colour (within shading) - the visual correlate."""
    for i in range(30):
        scene = sample_scene(random.Random(i))
        im = np.asarray(render_scene(scene, 64, style), dtype=np.int32)
        for obj in scene.objects:
            x, y = int(obj.cx * 64), int(obj.cy * 64 + (obj.d * 64 * 0.15 if obj.shape == "triangle" else 0))
            dists = {name: np.abs(im[y, x] - np.array(rgb)).sum() for name, rgb in COLORS.items()}
            assert min(dists, key=dists.get) == obj.color, (scene.caption, style, im[y, x])


def test_glossy_style_differs_and_sizes(tmp_path: Path) -> None:
    recs = synth_dataset(tmp_path / "g", 4, seed=5, style="glossy", image_size=96, progress=False)
    plain = synth_dataset(tmp_path / "p", 4, seed=5, image_size=96, progress=False)
    assert [r.captions for r in recs] == [r.captions for r in plain]  # same scenes, different look
    g, p = load_image(recs[0].path), load_image(plain[0].path)
    assert g.size == (96, 96) and np.abs(np.asarray(g, float) - np.asarray(p, float)).mean() > 10
    corner = np.asarray(g)[:3, :3].reshape(-1, 3)
    assert (corner[:, 2] > corner[:, 0]).all()  # blue-grey gradient backdrop, not the plain off-white
