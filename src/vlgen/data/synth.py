"""Procedurally rendered captioning data: coloured shapes with compositional captions.

Like open_clip's `synthetic` dataset, this lets every training path run on CPU in tests and demos, but the
captions here are *learnable*: each caption is a deterministic function of its picture, from a small
regular grammar (26 words)::

    scene  := group | group " above " group | group " to the left of " group
    group  := ("a" | "two") size colour shape["s"]
    size   := small | large;  colour := red | green | blue | yellow | purple
    shape  := circle | square | triangle | diamond

Two-group scenes are always described top-to-bottom or left-to-right, so "A above B" never competes with
"B below A", and the two groups always differ in colour or shape. Objects are large and saturated so that
a small CNN can tell them apart at 64 px.

`style="glossy"` renders the same scenes as shaded 3D icons (gradient fill, dark outline, specular
highlight, drop shadow, gradient backdrop): one distinctive look to personalise a text-to-image model on.

Every image is seeded from (seed, index) alone, so a run is bit-identical to any other with the same seed,
and `n=100` is a prefix of `n=1000`.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from vlgen.data.records import Record, write_dataset
from vlgen.data.splits import DEFAULT_RATIOS, assign_splits, count_splits
from vlgen.errors import DataError
from vlgen.fileio import atomic_write_bytes, write_json

Style = Literal["plain", "glossy"]
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 225),
    "yellow": (245, 210, 30),
    "purple": (145, 60, 195),
}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.22, "large": 0.40}  # object extent as a fraction of the canvas side
COUNT_WORDS = {1: "a", 2: "two"}
RELATIONS = {"vertical": "above", "horizontal": "to the left of"}
PLAIN_BACKGROUND = (245, 245, 240)


def vocabulary() -> list[str]:
    """Every word a synth caption can contain (sorted)."""
    words = {"a", "two", "above", "to", "the", "left", "of", *SIZES, *COLORS}
    words |= set(SHAPES) | {s + "s" for s in SHAPES}
    return sorted(words)


@dataclass(frozen=True)
class Group:
    count: int  # 1 or 2 identical objects
    size: str
    color: str
    shape: str

    def phrase(self) -> str:
        plural = "s" if self.count == 2 else ""
        return f"{COUNT_WORDS[self.count]} {self.size} {self.color} {self.shape}{plural}"


@dataclass(frozen=True)
class Object:
    shape: str
    color: str
    cx: float  # centre and extent, in canvas fractions (0..1)
    cy: float
    d: float


@dataclass(frozen=True)
class Scene:
    groups: tuple[Group, ...]
    layout: str  # "single", "vertical" (groups[0] on top) or "horizontal" (groups[0] on the left)
    objects: tuple[Object, ...]

    @property
    def caption(self) -> str:
        if self.layout == "single":
            return self.groups[0].phrase()
        return f"{self.groups[0].phrase()} {RELATIONS[self.layout]} {self.groups[1].phrase()}"


def _random_group(rng: random.Random) -> Group:
    return Group(rng.choice((1, 2)), rng.choice(list(SIZES)), rng.choice(list(COLORS)), rng.choice(SHAPES))


def _place(rng: random.Random, group: Group, region: tuple[float, float, float, float]) -> list[Object]:
    """Objects of `group` inside region (x0, y0, x1, y1); two objects split the region along its long side."""
    x0, y0, x1, y1 = region
    if group.count == 2:
        horizontal = (x1 - x0) > (y1 - y0) or ((x1 - x0) == (y1 - y0) and rng.random() < 0.5)
        if horizontal:
            xm = (x0 + x1) / 2
            cells = [(x0, y0, xm, y1), (xm, y0, x1, y1)]
        else:
            ym = (y0 + y1) / 2
            cells = [(x0, y0, x1, ym), (x0, ym, x1, y1)]
    else:
        cells = [region]
    d = SIZES[group.size]
    objects = []
    for cx0, cy0, cx1, cy1 in cells:
        # Jitter within the free room of the cell (80% of it, so shapes never touch the cell edge).
        jx = max(0.0, (cx1 - cx0 - d) / 2) * 0.8
        jy = max(0.0, (cy1 - cy0 - d) / 2) * 0.8
        cx = (cx0 + cx1) / 2 + rng.uniform(-jx, jx)
        cy = (cy0 + cy1) / 2 + rng.uniform(-jy, jy)
        objects.append(Object(group.shape, group.color, cx, cy, d))
    return objects


def sample_scene(rng: random.Random) -> Scene:
    """One random scene; the caption follows from it (see the module docstring's grammar)."""
    first = _random_group(rng)
    if rng.random() < 0.5:
        return Scene((first,), "single", tuple(_place(rng, first, (0.0, 0.0, 1.0, 1.0))))
    second = _random_group(rng)
    while (second.color, second.shape) == (first.color, first.shape):  # "a red circle above a red circle"
        second = _random_group(rng)  # would be indistinguishable from "two red circles"
    layout = rng.choice(("vertical", "horizontal"))
    if layout == "vertical":
        regions = ((0.0, 0.0, 1.0, 0.5), (0.0, 0.5, 1.0, 1.0))
    else:
        regions = ((0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0))
    objects = _place(rng, first, regions[0]) + _place(rng, second, regions[1])
    return Scene((first, second), layout, tuple(objects))


def _outline_points(shape: str, cx: float, cy: float, d: float) -> list[tuple[float, float]] | None:
    r = d / 2
    if shape == "square":
        s = r * 0.88  # a square the size of the circle looks bigger; equalise the visual area a bit
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    return None  # circle


def _draw_shape(draw: ImageDraw.ImageDraw, obj: Object, scale: float, dx: float = 0.0, dy: float = 0.0, **kw) -> None:
    cx, cy, d = (obj.cx + dx) * scale, (obj.cy + dy) * scale, obj.d * scale
    pts = _outline_points(obj.shape, cx, cy, d)
    if pts is None:
        draw.ellipse((cx - d / 2, cy - d / 2, cx + d / 2, cy + d / 2), **kw)
    else:
        draw.polygon(pts, **kw)


def _supersample(image_size: int, style: Style) -> int:
    # Render at >= 256 px (>= 128 px for glossy, whose float compositing costs more and whose blurs and
    # gradients hide jaggies anyway), then box-downsample: 2x-4x.
    target = 256 if style == "plain" else 128
    return max(2, min(4, -(-target // image_size)))


def render_scene(scene: Scene, image_size: int = 64, style: Style = "plain") -> Image.Image:
    """Draw `scene` as an RGB image of `image_size` px (rendered larger and box-downsampled for smooth edges)."""
    ss = _supersample(image_size, style)
    big = image_size * ss
    if style == "plain":
        im = Image.new("RGB", (big, big), PLAIN_BACKGROUND)
        draw = ImageDraw.Draw(im)
        for obj in scene.objects:
            _draw_shape(draw, obj, big, fill=COLORS[obj.color])
        return im.reduce(ss)
    if style != "glossy":
        raise DataError(f"unknown synth style {style!r} (expected 'plain' or 'glossy')")
    return _render_glossy(scene, big).reduce(ss)


def _mask(obj: Object, big: int, origin: tuple[int, int], size: tuple[int, int], dx=0.0, dy=0.0, **kw) -> Image.Image:
    """The object drawn into a (w, h) crop whose top-left corner is `origin` on the big canvas."""
    m = Image.new("L", size, 0)
    _draw_shape(ImageDraw.Draw(m), obj, big, dx - origin[0] / big, dy - origin[1] / big, **kw)
    return m


def _as_alpha(m: Image.Image) -> np.ndarray:
    return np.asarray(m, np.float32)[..., None] / 255  # (h, w, 1) in 0..1


def _render_glossy(scene: Scene, big: int) -> Image.Image:
    # Float canvas (H, W, 3) in 0..255. Each object (shadow, gradient body, outline, highlight) is composited
    # on a crop around it only: whole-canvas passes made 1000 images take 20 s instead of a few.
    ys = np.linspace(0, 1, big, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    top, bottom = np.array([232, 236, 248], np.float32), np.array([188, 196, 222], np.float32)
    canvas = np.broadcast_to(top + (bottom - top) * ys, (big, big, 3)).copy()  # soft blue-grey backdrop
    for obj in scene.objects:
        px = obj.d * big  # object extent in pixels
        x0, y0 = max(0, int((obj.cx - 0.6 * obj.d) * big)), max(0, int((obj.cy - 0.6 * obj.d) * big))
        x1, y1 = min(big, int((obj.cx + 0.75 * obj.d) * big) + 1), min(big, int((obj.cy + 0.8 * obj.d) * big) + 1)
        origin, size = (x0, y0), (x1 - x0, y1 - y0)
        crop = canvas[y0:y1, x0:x1]  # a view: writes go to the canvas
        shadow = _mask(obj, big, origin, size, dx=0.05 * obj.d, dy=0.08 * obj.d, fill=255)
        crop *= 1 - 0.45 * _as_alpha(shadow.filter(ImageFilter.GaussianBlur(px * 0.06)))
        body = _as_alpha(_mask(obj, big, origin, size, fill=255))
        # Light from the top-left: t runs 0 -> 1 across the object's diagonal.
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) / big
        t = np.clip(((xx - obj.cx) + (yy - obj.cy)) / obj.d + 0.5, 0, 1)[..., None]
        base = np.array(COLORS[obj.color], np.float32)
        fill = np.clip(base * (1.30 - 0.65 * t) + 25 * (1 - t), 0, 255)
        crop[:] = crop * (1 - body) + fill * body
        width = max(2, round(px * 0.07))
        outline = _as_alpha(_mask(obj, big, origin, size, outline=255, width=width))
        crop[:] = crop * (1 - outline) + (base * 0.30) * outline
        hl = Image.new("L", size, 0)
        hx, hy = (obj.cx - 0.14 * obj.d) * big - x0, (obj.cy - 0.20 * obj.d) * big - y0
        ImageDraw.Draw(hl).ellipse((hx - px * 0.22, hy - px * 0.12, hx + px * 0.22, hy + px * 0.12), fill=255)
        highlight = _as_alpha(hl.filter(ImageFilter.GaussianBlur(px * 0.05)))
        crop += (255 - crop) * 0.7 * highlight * body
    return Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8), "RGB")


def synth_dataset(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    style: Style = "plain",
    image_size: int = 64,
    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Record]:
    """Render `n` scenes into an imagefolder dataset with train/validation/test splits; returns the records."""
    from vlgen.data.importers._common import IMPORT_INFO_NAME, prepare_out_dir

    if n <= 0:
        raise DataError(f"--n must be positive, got {n}")
    if not 16 <= image_size <= 1024:
        raise DataError(f"--image-size must be between 16 and 1024, got {image_size}")
    if style not in ("plain", "glossy"):
        raise DataError(f"unknown synth style {style!r} (expected 'plain' or 'glossy')")
    out = prepare_out_dir(out_dir, overwrite)
    names = [f"{i:06d}.png" for i in range(n)]
    splits = assign_splits(names, split_ratios, seed)
    indices: range = range(n)
    if progress:
        from vlgen.progress import track

        indices = track(range(n), f"rendering {style} scenes")  # type: ignore[assignment]
    records = []
    for i in indices:
        # String seeds hash the same in every process (unlike hash()), so images depend on (seed, i) only.
        scene = sample_scene(random.Random(f"vlgen-synth:{seed}:{i}"))
        buf = io.BytesIO()
        render_scene(scene, image_size, style).save(buf, format="PNG")
        dst = atomic_write_bytes(out / names[i], buf.getvalue())
        records.append(Record(names[i], [scene.caption], splits[names[i]], dst))
    write_dataset(out, records)
    sizes = {k: v for k, v in count_splits(records).items() if k != "none"}
    info = {"importer": "synth", "n": n, "seed": seed, "style": style, "image_size": image_size}
    write_json(out / IMPORT_INFO_NAME, {**info, "split_ratios": list(split_ratios), "split_sizes": sizes})
    return records
