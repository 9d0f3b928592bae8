"""One safe image loader for all of vlgen: files, uploads and dataset checks go through here.

`load_image` always returns an RGB `PIL.Image` with EXIF orientation applied, or raises `ImageLoadError`
naming the file and the reason. It is lenient about *representations* (CMYK, 16-bit, palette, alpha,
greyscale, 1-bit are converted, transparency is composited on white) and strict about *damage* (missing,
empty, truncated, not an image, too many pixels).

The pixel limit is checked from the header before any pixel is decoded, so a 1 KB "decompression bomb"
PNG that declares 50,000 x 50,000 pixels costs nothing to reject.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from vlgen.errors import ImageLoadError

DEFAULT_MAX_PIXELS = 64_000_000  # 64 MP: larger than any camera JPEG we expect, far below a bomb
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WHITE = (255, 255, 255)


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load an image file as RGB (EXIF-rotated, alpha on white); raise `ImageLoadError` saying why not."""
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise ImageLoadError("file not found", path=name)
    if p.is_dir():
        raise ImageLoadError("is a directory, not an image file", path=name)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            if size == 0:
                raise ImageLoadError("empty file (0 bytes)", path=name)
            return _decode(f, name, max_pixels)
    except PermissionError:
        raise ImageLoadError("permission denied", path=name) from None
    except IsADirectoryError:  # a race with the is_dir check above, or an odd filesystem
        raise ImageLoadError("is a directory, not an image file", path=name) from None


def load_image_bytes(data: bytes, name: str = "<upload>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Like `load_image` for bytes already in memory (HTTP uploads, zip members); `name` goes in errors."""
    if not data:
        raise ImageLoadError("empty file (0 bytes)", path=name)
    return _decode(io.BytesIO(data), name, max_pixels)


def probe_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Cheap check for importers: readable header of a known format within the pixel limit -> (width, height).

    Does not decode pixels, so a truncated body passes; `vlgen data validate` decodes everything.
    """
    name = str(path)
    p = Path(path)
    if not p.is_file():
        raise ImageLoadError("is a directory, not an image file" if p.is_dir() else "file not found", path=name)
    if p.stat().st_size == 0:
        raise ImageLoadError("empty file (0 bytes)", path=name)
    try:
        with open(p, "rb") as f:
            return _open_header(f, name, max_pixels).size
    except PermissionError:
        raise ImageLoadError("permission denied", path=name) from None


def _open_header(fp: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and enforce the pixel limit before decoding."""
    try:
        with warnings.catch_warnings():
            # We enforce our own limit below; PIL's warning (at 89 MP) would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except Image.DecompressionBombError as e:
        # PIL refuses on its own above 2 * Image.MAX_IMAGE_PIXELS (~179 MP) before we see the size.
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise ImageLoadError(f"image is over the limit of {limit:,} pixels ({e})", path=name) from None
    except UnidentifiedImageError:
        raise ImageLoadError("not an image, or an unsupported/corrupt format", path=name) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"corrupt image header ({e})", path=name) from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"invalid image size {w}x{h}", path=name)
    if w * h > max_pixels:
        raise ImageLoadError(
            f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} (max_pixels)", path=name
        )
    return im


def _decode(fp: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    im = _open_header(fp, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL says "image file is truncated" / "broken data stream" etc.; keep its words after ours.
        raise ImageLoadError(f"truncated or corrupt image data ({e})", path=name) from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # malformed EXIF blocks raise a zoo of types inside PIL
        raise ImageLoadError(f"unreadable EXIF orientation ({type(e).__name__}: {e})", path=name) from None
    try:
        return to_rgb(im)
    except (OSError, ValueError) as e:
        raise ImageLoadError(f"cannot convert mode {im.mode!r} to RGB ({e})", path=name) from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha composited on white, 16/32-bit scaled (not clipped) to 8-bit."""
    mode = im.mode
    if mode == "RGB":
        return im
    import numpy as np  # only the rare 16/32-bit modes need it; keeps `import vlgen.data` light

    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # PIL's own convert("RGB") clips 16-bit values at 255 (a white image); scale the range instead.
        # Mode "I" is how PIL opens 16-bit greyscale PNG/TIFF, so treat it as 16-bit too.
        arr = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0  # float images are usually 0..1
        return Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, L, 1, P (opaque)
