"""load_image: lenient about representations (exact pixels checked), strict about damage (clear reasons)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlgen.data import DEFAULT_MAX_PIXELS, load_image, load_image_bytes, probe_image
from vlgen.errors import ImageLoadError


def px(im: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return im.getpixel(xy)  # type: ignore[return-value]


def _two_halves(w: int = 32, h: int = 16) -> Image.Image:
    """Left half red, right half blue: shows where the image went after a rotation."""
    im = Image.new("RGB", (w, h), (255, 0, 0))
    im.paste((0, 0, 255), (w // 2, 0, w, h))
    return im


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied(tmp_path: Path, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": phones write this for portrait shots
    path = tmp_path / f"rotated.{fmt.lower()}"
    _two_halves().save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (16, 32)  # width and height swapped
    top, bottom = np.array(px(im, (8, 4))), np.array(px(im, (8, 28)))
    assert np.abs(top - (255, 0, 0)).max() <= 8  # the left (red) half is now on top
    assert np.abs(bottom - (0, 0, 255)).max() <= 8


def test_cmyk_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.tif"
    Image.new("CMYK", (4, 4), (255, 0, 0, 0)).save(path)  # pure cyan ink
    assert px(load_image(path), (1, 1)) == (0, 255, 255)


@pytest.mark.parametrize("value,expected", [(65535, 255), (128 * 257, 128), (0, 0)])
def test_16bit_greyscale_is_scaled_not_clipped(tmp_path: Path, value: int, expected: int) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), value, dtype=np.uint16)).save(path)
    assert px(load_image(path), (2, 2)) == (expected,) * 3


def test_palette_with_transparency_goes_on_white(tmp_path: Path) -> None:
    im = Image.new("P", (4, 2), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    im.paste(1, (2, 0, 4, 2))
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)  # index 0 (red) is fully transparent
    out = load_image(path)
    assert px(out, (0, 0)) == (255, 255, 255)
    assert px(out, (3, 1)) == (0, 0, 255)


def test_la_and_rgba_alpha_composited_on_white(tmp_path: Path) -> None:
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 255))
    la.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert px(out, (0, 0)) == (255, 255, 255) and px(out, (1, 0)) == (0, 0, 0)
    Image.new("RGBA", (2, 2), (255, 0, 0, 128)).save(tmp_path / "rgba.png")
    r, g, b = px(load_image(tmp_path / "rgba.png"), (0, 0))
    assert r == 255 and 125 <= g <= 129 and g == b  # half red over white = pink


@pytest.mark.parametrize("mode,value,expected", [("L", 100, (100, 100, 100)), ("1", 1, (255, 255, 255))])
def test_greyscale_and_bilevel(tmp_path: Path, mode: str, value: int, expected: tuple) -> None:
    Image.new(mode, (3, 3), value).save(tmp_path / "g.png")
    assert px(load_image(tmp_path / "g.png"), (1, 1)) == expected


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, with a tiny body: must be rejected before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _truncated(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


BAD_FILES = {
    "missing": (None, "file not found"),
    "empty": (b"", "empty file"),
    "text": (b"hello, I am not a picture\n", "not an image"),
    "truncated_png": (_truncated("PNG"), "truncated"),
    "truncated_jpeg": (_truncated("JPEG"), "truncated"),
    "bomb": (_bomb_png(100_000, 100_000), "over the limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_damaged_files_raise_with_file_and_reason(tmp_path: Path, case: str) -> None:
    data, reason = BAD_FILES[case]
    path = tmp_path / f"{case}.png"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(ImageLoadError) as e:
        load_image(path)
    assert str(path) in str(e.value) and reason in str(e.value)


def test_directory_and_pixel_limit(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="20x20 = 400 pixels, over the limit of 399"):
        load_image(tmp_path / "big.png", max_pixels=399)
    assert load_image(tmp_path / "big.png", max_pixels=400).size == (20, 20)
    with pytest.raises(ImageLoadError, match="over the limit"):
        probe_image(tmp_path / "big.png", max_pixels=399)


def test_bomb_rejected_from_header_without_decoding(tmp_path: Path) -> None:
    # 144 MP: over our 64 MP default but under PIL's own refusal threshold (~179 MP), so our check decides.
    (tmp_path / "bomb.png").write_bytes(_bomb_png(12_000, 12_000))
    assert DEFAULT_MAX_PIXELS < 12_000 * 12_000
    with pytest.raises(ImageLoadError, match="12000x12000 = 144,000,000 pixels"):
        load_image(tmp_path / "bomb.png")
    with pytest.raises(ImageLoadError, match="144,000,000 pixels"):
        probe_image(tmp_path / "bomb.png")


def test_load_image_bytes_for_uploads() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (3, 2), (0, 0, 255, 255)).save(buf, format="PNG")
    im = load_image_bytes(buf.getvalue(), "upload.png")
    assert im.mode == "RGB" and im.size == (3, 2) and px(im, (0, 0)) == (0, 0, 255)
    with pytest.raises(ImageLoadError, match=r"^upload\.bin: empty file"):
        load_image_bytes(b"", "upload.bin")
    with pytest.raises(ImageLoadError, match=r"^photo\.jpg: not an image"):
        load_image_bytes(b"<html>", "photo.jpg")
