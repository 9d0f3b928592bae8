"""Reduce-on-decode (`load_image(..., input_size=)`): big images shrink while they are decoded, never below
REDUCE_MARGIN x the model input, and the model still gets nearly the pixels the full image would give."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlgen.data import load_image, load_image_bytes
from vlgen.data.images import REDUCE_MARGIN

SAVE_KW = {"JPEG": {"quality": 92}, "WEBP": {"quality": 92}}


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Photo-like: smooth colour fields, sharp-edged discs and sensor noise (detail at every scale)."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8))
    im = base.resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(30):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(w // 50, w // 6))
        draw.ellipse((x, y, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    noisy = np.asarray(im) + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@functools.cache
def _photo_bytes(w: int, h: int, fmt: str) -> bytes:
    return encode(photo(w, h, seed=w), fmt)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **SAVE_KW.get(fmt, {}), **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_large_images_are_reduced_but_never_below_the_margin(fmt: str) -> None:
    data = encode(photo(1000, 700), fmt)
    im = load_image_bytes(data, input_size=(32, 32))
    assert im.mode == "RGB"
    # never below 3 x the input on either side; a JPEG at least twice the input is drafted (DCT scale) down to
    # no less than the input itself (issue 19; tests/captioning/test_caption_inputs.py): 1/8 -> 125 x 88
    assert min(im.size) >= (32 if fmt == "JPEG" else REDUCE_MARGIN * 32), im.size
    assert im.width * im.height <= 1000 * 700 / 4, im.size  # and really smaller than the full 1000 x 700
    assert abs(im.width / im.height - 1000 / 700) < 0.02  # one scale for both axes
    if fmt != "JPEG":  # BOX to exactly 3 x on the tighter side
        assert im.height == REDUCE_MARGIN * 32


def test_small_images_and_no_input_size_are_left_alone() -> None:
    data = encode(photo(180, 150), "PNG")  # under 2 x (3 x 32) on one side: not worth a second resampling
    full = load_image_bytes(data)
    assert load_image_bytes(data, input_size=(32, 32)).tobytes() == full.tobytes()
    big = encode(photo(1000, 700), "PNG")
    assert load_image_bytes(big).size == (1000, 700)  # no input_size: the image as it is (data validate, reports)


def test_file_and_bytes_decode_the_same(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(encode(photo(900, 640), "PNG"))
    a = load_image(path, input_size=(32, 32))
    b = load_image_bytes(path.read_bytes(), input_size=(32, 32))
    assert a.size == b.size and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("size", [32, 64])
def test_model_pixels_nearly_match_the_full_image(fmt: str, size: int) -> None:
    """What the captioner sees (pixel_values after BLIP's own bicubic resize) from the reduced image differs
    from what the full image gives by well under one 8-bit level on average (a JPEG drafted down to the
    input's size, about one level: libjpeg's scaled DCT in place of the processor's antialiased resize)."""
    from transformers import BlipImageProcessor

    processor = BlipImageProcessor(size={"height": size, "width": size})
    # 1203 x 803: not a multiple of JPEG's 1/8 scale, so the draft ends in a partial block that must be mapped
    for w, h in [(1600, 1600), (1203, 803), (701, 643)]:
        data = _photo_bytes(w, h, fmt)
        full = processor(load_image_bytes(data), return_tensors="np").pixel_values
        reduced_image = load_image_bytes(data, input_size=(size, size))
        assert reduced_image.width < w  # the case is one that reduces
        reduced = processor(reduced_image, return_tensors="np").pixel_values
        levels = np.abs(full - reduced) * np.array(processor.image_std).reshape(1, 3, 1, 1) * 255
        # measured (noisy photo-like images): PNG mean <= 0.4, max <= 5; JPEG mean <= 1.3, max <= 20 (701 x 643
        # at 64 px: drafted to 1/8 = 88 x 81, just over the input)
        mean_bound, max_bound = (1.6, 28) if fmt == "JPEG" else (1.0, 12)
        assert levels.mean() < mean_bound and levels.max() < max_bound, (w, h, levels.mean(), levels.max())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_survives_the_reduction(fmt: str, orientation: int) -> None:
    """TIFF keeps its orientation in its own tags, which a reduced copy loses: the rotation must still apply."""
    src = Image.new("RGB", (1200, 800), (255, 0, 0))
    src.paste((0, 0, 255), (600, 0, 1200, 400))  # top-right quadrant blue
    src.paste((0, 255, 0), (0, 400, 600, 800))  # bottom-left quadrant green
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(src, fmt, exif=exif)
    full = load_image_bytes(data)
    reduced = load_image_bytes(data, input_size=(32, 32))
    assert reduced.width < full.width or reduced.height < full.height
    assert (full.width > full.height) == (reduced.width > reduced.height)  # rotated the same way
    expected = np.asarray(full.resize(reduced.size, Image.Resampling.BOX), dtype=np.float64)
    assert np.abs(np.asarray(reduced, dtype=np.float64) - expected).mean() < 3


def _alpha_palette_image() -> Image.Image:
    im = Image.new("P", (1000, 600), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red (transparent below), 1 blue
    im.paste(1, (500, 0, 1000, 600))
    return im


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: (_alpha_palette_image(), {"transparency": 0}), id="P+transparency"),
        pytest.param(lambda: (Image.new("RGBA", (1000, 600), (255, 0, 0, 0)), {}), id="RGBA-clear"),
        pytest.param(lambda: (Image.new("LA", (1000, 600), (40, 128)), {}), id="LA"),
        pytest.param(lambda: (Image.fromarray(np.full((600, 1000), 128 * 257, np.uint16)), {}), id="I16"),
        pytest.param(lambda: (Image.new("1", (1000, 600), 1), {}), id="1-bit"),
    ],
)
def test_every_mode_reduces_to_what_the_full_decode_shows(make) -> None:
    im, kw = make()
    data = encode(im, "PNG", **kw)
    full = load_image_bytes(data)
    reduced = load_image_bytes(data, input_size=(32, 32))
    assert reduced.mode == "RGB" and reduced.height == REDUCE_MARGIN * 32
    # Resized in its own mode (alpha premultiplied, palette as colours, 16-bit scaled), it equals the full
    # decode resized: a palette averaged as indices or alpha averaged straight would be far off.
    expected = np.asarray(full.resize(reduced.size, Image.Resampling.BICUBIC), dtype=np.float64)
    diff = np.abs(np.asarray(reduced, dtype=np.float64) - expected)
    assert diff.mean() < 0.5 and diff.max() <= 12  # (a few levels at a sharp edge: PIL's pre-reduction)
