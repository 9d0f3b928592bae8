"""One safe image loader for all of vlgen: files, uploads and dataset checks go through here.

`load_image` always returns an RGB `PIL.Image` with EXIF orientation applied, or raises `ImageLoadError`
naming the file and the reason. It is lenient about *representations* (CMYK, 16-bit, palette, alpha,
greyscale, 1-bit are converted, transparency is composited on white) and strict about *damage* (missing,
empty, truncated, not an image, too many pixels).

The pixel limit is checked from the header before any pixel is decoded, so a 1 KB "decompression bomb"
PNG that declares 50,000 x 50,000 pixels costs nothing to reject.

Given the model's `input_size` (what its processor resizes to; `Captioner.input_size`), a large image is
reduced while it is decoded: a JPEG at least twice the input on both sides is decoded at 1/2, 1/4 or 1/8
scale in the DCT domain (`draft`; `jpeg_draft_scale`: the smallest scale still at least the input, issue 19),
and any image still over twice REDUCE_MARGIN (3) times the input is resized (antialiased bicubic) to that
right after decoding, before the RGB conversion and EXIF rotation, so no full-size copy outlives the decode:
a 5000 x 5000 upload then holds 4 MB for BLIP (384 px) instead of 75 MB. The processor's own resize still
does the last step and the model gets nearly the pixels the full image would give (tests/data/
test_image_reduce.py bounds the difference: under half an 8-bit level on average for resized images, about
one for drafted JPEGs, whose decode is 4-16x cheaper). `vlgen caption` (its input workers) and `vlgen serve`
both decode through `decode_image`, so one image gets one caption from both.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from vlgen.errors import ImageLoadError

DEFAULT_MAX_PIXELS = 64_000_000  # 64 MP: larger than any camera JPEG we expect, far below a bomb
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WHITE = (255, 255, 255)
# Reduce-on-decode stops at REDUCE_MARGIN x the model input on each side, never lower: the processor's own
# resize (bicubic for BLIP, bilinear for ViT, both antialiased) then still does the last, dominant step, so
# the model gets nearly the pixels the full image would give: after BlipImageProcessor, on noisy photo-like
# PNG and JPEG images of 700x640 .. 5000x5000 and inputs of 32, 64 and 384 px, the mean |difference| is
# 0.2-0.5 of 255 levels (max 5); at 2x it is up to 2x larger. Going straight down to the input size would
# replace the processor's resize by ours. The reduced image costs 9 x input pixels: 4 MB for BLIP's 384 px.
REDUCE_MARGIN = 3
# Modes whose samples PIL can box-average as they are (P indices, 1-bit and I;16 are converted first).
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F"})
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def load_image(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, *, input_size: tuple[int, int] | None = None
) -> Image.Image:
    """Load an image file as RGB (EXIF-rotated, alpha on white); raise `ImageLoadError` saying why not.

    `input_size`: the model's (width, height) input; a larger image is reduced as it is decoded, to no less than
    REDUCE_MARGIN times it on either side (see above). None: the image at its own size.
    """
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
            return _decode(f, name, max_pixels, input_size)
    except PermissionError:
        raise ImageLoadError("permission denied", path=name) from None
    except IsADirectoryError:  # a race with the is_dir check above, or an odd filesystem
        raise ImageLoadError("is a directory, not an image file", path=name) from None


def load_image_bytes(
    data: bytes,
    name: str = "<upload>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    input_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Like `load_image` for bytes already in memory (HTTP uploads, zip members); `name` goes in errors."""
    if not data:
        raise ImageLoadError("empty file (0 bytes)", path=name)
    return _decode(io.BytesIO(data), name, max_pixels, input_size)


def probe_image_bytes(data: bytes, name: str = "<upload>", max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header of in-memory image bytes, within the pixel limit; no pixel is decoded."""
    if not data:
        raise ImageLoadError("empty file (0 bytes)", path=name)
    return _open_header(io.BytesIO(data), name, max_pixels).size


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


def jpeg_draft_scale(size: tuple[int, int], input_size: tuple[int, int]) -> int:
    """The DCT scale denominator (1, 2, 4 or 8) `_decode` decodes a JPEG of `size` at for a model input of
    `input_size` (both (width, height), stored orientation): the largest that leaves both sides at least the
    input, so 1 (a full decode) unless the photo is at least twice the input on both sides (issue 19).

    The same rule as PIL's `JpegImageFile.draft(mode, input_size)`, which picks the scale; the decoded size is
    ceil(width / scale) x ceil(height / scale)."""
    ratio = min(size[0] // max(1, input_size[0]), size[1] // max(1, input_size[1]))
    return next((s for s in (8, 4, 2) if ratio >= s), 1)


def decode_image(
    data: bytes | str | os.PathLike,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    input_size: tuple[int, int] | None = None,
) -> Image.Image:
    """The one decode of a model's input image, shared by `vlgen caption` (its input workers) and `vlgen serve`:
    bytes (an upload, a shard member) or a path, reduced for a model of `input_size` as it decodes (a JPEG in
    draft mode only when at least twice the input on both sides; see the module docstring).
    `ImageLoadError` names `name` (default: the path, or "<upload>")."""
    if isinstance(data, bytes | bytearray | memoryview):
        return load_image_bytes(bytes(data), name or "<upload>", max_pixels, input_size=input_size)
    return load_image(data, max_pixels, input_size=input_size)


def _decode(fp: BinaryIO, name: str, max_pixels: int, input_size: tuple[int, int] | None = None) -> Image.Image:
    im = _open_header(fp, name, max_pixels)
    target = None  # (width, height) not to go below, in stored (pre-rotation) orientation
    extent = None  # the full image's extent in decoded pixels (fractional after a JPEG draft)
    if input_size is not None:
        tw, th = input_size
        if _orientation(im, name) in (5, 6, 7, 8):  # EXIF rotations that swap the axes
            tw, th = th, tw
        target = (REDUCE_MARGIN * tw, REDUCE_MARGIN * th)
        if im.format == "JPEG" and jpeg_draft_scale(im.size, (tw, th)) > 1:
            # libjpeg decodes straight to 1/2, 1/4 or 1/8 scale (jpeg_draft_scale: the smallest still at least
            # the input on both sides): a 5000 x 5000 photo never exists at full size. `extent` is where the
            # full image lies in the scaled one: a dimension that is not a multiple of the scale ends in a
            # partial block, mapped out below.
            drafted = im.draft(None, (tw, th))
            extent = drafted[1] if drafted is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL says "image file is truncated" / "broken data stream" etc.; keep its words after ours.
        raise ImageLoadError(f"truncated or corrupt image data ({e})", path=name) from None
    if target is not None:
        box = extent or (0, 0, im.width, im.height)
        factor = min((box[2] - box[0]) / target[0], (box[3] - box[1]) / target[1])
        partial = tuple(box) != (0, 0, im.width, im.height)  # a draft's partial last block must be mapped out
        if factor >= 2 or partial:  # under 2x the saving is small and a second resampling not worth it
            scale = max(factor, 1.0)
            size = (max(1, round((box[2] - box[0]) / scale)), max(1, round((box[3] - box[1]) / scale)))
            orientation = _orientation(im, name)
            try:
                # Palette indices, 1-bit and 16-bit samples cannot be averaged as they are: convert first.
                full = im if im.mode in _REDUCIBLE_MODES else to_rgb(im)
                # Antialiased bicubic over the exact (fractional) extent, with PIL's integer pre-reduction
                # (reducing_gap) for speed. A plain `reduce()`/BOX lands partial edge blocks on whole pixels and
                # filters worse: 3-6 levels mean error after BLIP's resize instead of 0.2-0.5.
                im = full.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=2.0)
            except (OSError, ValueError) as e:
                raise ImageLoadError(f"cannot reduce mode {im.mode!r} image ({e})", path=name) from None
            del full  # the full-size pixels go now, not when the caller's batch is done
            # The reduced copy does not carry every format's orientation tag (TIFF keeps it in its own
            # tags), so rotate by the original's; the same table as ImageOps.exif_transpose.
            if orientation in _EXIF_TRANSPOSE:
                im = im.transpose(_EXIF_TRANSPOSE[orientation])
            return _rgb(im, name)
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # malformed EXIF blocks raise a zoo of types inside PIL
        raise ImageLoadError(f"unreadable EXIF orientation ({type(e).__name__}: {e})", path=name) from None
    return _rgb(im, name)


def _rgb(im: Image.Image, name: str) -> Image.Image:
    try:
        return to_rgb(im)
    except (OSError, ValueError) as e:
        raise ImageLoadError(f"cannot convert mode {im.mode!r} to RGB ({e})", path=name) from None


def _orientation(im: Image.Image, name: str) -> int:
    """The EXIF orientation (1-8) exif_transpose would apply; 1 when there is none."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as e:  # malformed EXIF blocks raise a zoo of types inside PIL
        raise ImageLoadError(f"unreadable EXIF orientation ({type(e).__name__}: {e})", path=name) from None
    return value if isinstance(value, int) else 1


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
