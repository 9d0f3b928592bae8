"""Image grids: sample sheets for the model card and base-vs-LoRA comparisons."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

LABEL_WIDTH = 176  # px of the row-label column: ~30 characters a line in PIL's default font
PAD = 4


def wrap_text(draw: ImageDraw.ImageDraw, text: str, width: int, max_lines: int) -> list[str]:
    """`text` word-wrapped to lines at most `width` px wide; past `max_lines` the last line kept ends in '…'.
    A word wider than a line is cut (with '…')."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    lines = [_cut(draw, line, width) for line in lines] or [""]
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], _cut(draw, lines[max_lines - 1], width, ellipsis=True)]
    return lines


def _cut(draw: ImageDraw.ImageDraw, line: str, width: int, ellipsis: bool = False) -> str:
    """`line` if it fits (and no '…' is asked for), else its longest head that fits with '…' appended."""
    if not ellipsis and draw.textlength(line) <= width:
        return line
    line = line.removesuffix("\u2026")
    while line and draw.textlength(line + "\u2026") > width:
        line = line[:-1]
    return line.rstrip() + "\u2026"


def common_prefix_words(texts: Sequence[str]) -> str:
    """The leading words every text shares, up to the last shared word that ends a clause (',', ';', ':') if
    one does, with the trailing space; '' for fewer than two distinct texts.
    ['a 3D icon of TOK, a cat', 'a 3D icon of TOK, a dog'] -> 'a 3D icon of TOK, ' (not '... TOK, a ')."""
    if len(set(texts)) < 2:
        return ""
    words = [t.split(" ") for t in texts]
    n = 0
    while all(len(w) > n + 1 and w[n] == words[0][n] for w in words):  # +1: every text keeps a word of its own
        n += 1
    clause = [i + 1 for i in range(n) if words[0][i].endswith((",", ";", ":"))]
    n = clause[-1] if clause else n
    return " ".join(words[0][:n]) + " " if n else ""


def image_grid(
    rows: Sequence[Sequence[Image.Image]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell: int | None = None,
    title: str | None = None,
) -> Image.Image:
    """Rows of images (all rows the same length) on white, optional labels on the left and on top, and an
    optional title line above everything (e.g. the part of the prompts that all rows share).

    Cells are `cell` px squares (default: the first image's width); images are resized to fit. Row labels are
    word-wrapped into the label column, as many lines as the cell's height holds.
    """
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one image")
    size = cell or rows[0][0].width
    ncols = max(len(r) for r in rows)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = measure.textbbox((0, 0), "Ag\u2026")[3] + 2
    left = LABEL_WIDTH if row_labels else 0
    width = left + ncols * size
    title_lines = wrap_text(measure, title, width - 2 * PAD, 3) if title else []
    top_title = len(title_lines) * line_h + (PAD if title_lines else 0)
    top = top_title + (line_h + PAD if col_labels else 0)
    sheet = Image.new("RGB", (width, top + len(rows) * size), "white")
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(title_lines):
        draw.text((PAD, PAD // 2 + i * line_h), line, fill="black")
    max_lines = max(1, (size - PAD) // line_h)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(im.convert("RGB").resize((size, size)), (left + c * size, top + r * size))
        if row_labels:
            for i, line in enumerate(wrap_text(draw, row_labels[r], left - 2 * PAD, max_lines)):
                draw.text((PAD, top + r * size + PAD + i * line_h), line, fill="black")
    for c, label in enumerate(col_labels or []):
        draw.text((left + c * size + PAD, top_title + 3), _cut(draw, label, size - PAD), fill="black")
    return sheet
