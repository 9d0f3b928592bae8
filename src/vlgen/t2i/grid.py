"""Image grids: sample sheets for the model card and base-vs-LoRA comparisons."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw


def image_grid(
    rows: Sequence[Sequence[Image.Image]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell: int | None = None,
) -> Image.Image:
    """Rows of images (all rows the same length) on white, optional labels on the left and on top.

    Cells are `cell` px squares (default: the first image's width); images are resized to fit.
    """
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one image")
    size = cell or rows[0][0].width
    left = 120 if row_labels else 0
    top = 18 if col_labels else 0
    ncols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (left + ncols * size, top + len(rows) * size), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(im.convert("RGB").resize((size, size)), (left + c * size, top + r * size))
        if row_labels:
            draw.text((4, top + r * size + 4), row_labels[r][:18], fill="black")
    for c, label in enumerate(col_labels or []):
        draw.text((left + c * size + 4, 3), label[: max(4, size // 7)], fill="black")
    return sheet
