"""The outputs of `vlgen evaluate captions --out DIR`: files a person keeps and a page they want to read.

DIR/metrics.json      the --json object (corpus scores, n, settings)
DIR/per_item.jsonl    one line per input item: line, id, file_name, prediction, references, scores
DIR/examples.json     best and worst k items by `rank_by` (the write-ups' Table 2/3)
DIR/examples.md       the same as Markdown tables, ready to paste
DIR/lengths.png       word-count histogram, predictions vs references
DIR/thumbs/*.jpg      thumbnails of the example images (when images are known, i.e. joined to a dataset)
DIR/report.html       all of the above on one page (images are the files beside it)
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlgen.errors import ConfigError, VlgenError
from vlgen.fileio import atomic_write_bytes, atomic_write_text, write_json, write_jsonl
from vlgen.metrics import METRIC_KEYS, CaptionScores
from vlgen.report import html
from vlgen.report.plots import length_histogram_png
from vlgen.report.predictions import CaptionItem

# Columns shown in example tables, after the ranking metric (when computed).
EXAMPLE_COLUMNS = ("BLEU-4", "CIDEr", "BERTScore", "combined", "prompt_similarity", "CLIPScore", "RefCLIPScore")


def default_rank_by(scores: CaptionScores) -> str:
    """`combined` when computed, else the first per-item metric in METRIC_KEYS order."""
    available = [k for k in METRIC_KEYS if scores.per_item and k in scores.per_item[0]]
    if not available:
        raise ConfigError("no per-item scores to rank examples by")
    return "combined" if "combined" in available else available[0]


def rank_examples(scores: CaptionScores, rank_by: str, k: int) -> tuple[list[int], list[int]]:
    """Indices of the k best and k worst items by `rank_by` (ties keep file order)."""
    if not scores.per_item or rank_by not in scores.per_item[0]:
        have = ", ".join(k for k in METRIC_KEYS if scores.per_item and k in scores.per_item[0])
        raise ConfigError(f"--rank-by {rank_by!r} has no per-item scores in this run (available: {have})")
    vals = [row[rank_by] for row in scores.per_item]
    order = sorted(range(len(vals)), key=lambda i: (-vals[i], i))
    worst = sorted(range(len(vals)), key=lambda i: (vals[i], i))
    return order[:k], worst[:k]


def _item_row(i: int, item: CaptionItem, scores: CaptionScores) -> dict[str, Any]:
    row: dict[str, Any] = {"index": i, "line": item.line}
    if item.id is not None:
        row["id"] = item.id
    if item.file_name is not None:
        row["file_name"] = item.file_name
    row["prediction"] = item.prediction
    row["references"] = item.references
    row.update(scores.per_item[i])
    return row


def _thumbnail(item: CaptionItem, out_dir: Path, i: int) -> str | None:
    """Write thumbs/<i>.jpg for an item with a known image; the page-relative path, or None."""
    if item.image is None:
        return None
    from vlgen.data import load_image

    try:
        im = load_image(item.image)
    except VlgenError:
        return None  # a broken image should not cost the user the whole report; the cell says so
    im.thumbnail((256, 256))
    rel = f"thumbs/{i:06d}.jpg"
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=85)
    atomic_write_bytes(out_dir / rel, buf.getvalue())
    return rel


def _markdown(rows: list[dict[str, Any]], cols: Sequence[str]) -> str:
    def cell(x: Any) -> str:
        text = f"{x:.4f}" if isinstance(x, float) else " / ".join(x) if isinstance(x, list) else str(x)
        return text.replace("|", "\\|").replace("\n", " ")

    head = ["item", "prediction", "references", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        label = r.get("id") or r.get("file_name") or f"line {r['line']}"
        lines.append(
            "| "
            + " | ".join(cell(v) for v in [label, r["prediction"], r["references"], *[r.get(c, "") for c in cols]])
            + " |"
        )
    return "\n".join(lines) + "\n"


def _examples_html(rows: list[dict[str, Any]], cols: Sequence[str], thumbs: dict[int, str | None], images: bool):
    headers = (["image"] if images else []) + ["item", "prediction", "references", *cols]
    first_num = len(headers) - len(cols)
    body = []
    for r in rows:
        cells: list[Any] = []
        if images:
            src = thumbs.get(r["index"])
            cells.append(
                html.img(src, alt=r.get("file_name", "")) if src else html.Raw('<span class="muted">no image</span>')
            )
        label = r.get("id") or r.get("file_name") or f"line {r['line']}"
        cells += [label, r["prediction"] or html.Raw('<span class="muted">(empty)</span>'), html.ul(r["references"])]
        cells += [html.fmt(r.get(c)) for c in cols]
        body.append(cells)
    return html.table(headers, body, numeric=range(first_num, len(headers)))


def write_caption_report(
    out_dir: str | os.PathLike,
    items: Sequence[CaptionItem],
    scores: CaptionScores,
    *,
    rank_by: str | None = None,
    k: int = 5,
    source: str | None = None,
) -> dict[str, Path]:
    """Write every output listed in the module docstring; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank_by = rank_by or default_rank_by(scores)
    best, worst = rank_examples(scores, rank_by, k)
    rows = [_item_row(i, it, scores) for i, it in enumerate(items)]
    cols = [rank_by, *[c for c in EXAMPLE_COLUMNS if c != rank_by and c in scores.per_item[0]]]

    files: dict[str, Path] = {}
    metrics = scores.to_json()
    files["metrics"] = write_json(out / "metrics.json", metrics)
    files["per_item"] = write_jsonl(out / "per_item.jsonl", rows)
    examples = {"rank_by": rank_by, "k": k, "best": [rows[i] for i in best], "worst": [rows[i] for i in worst]}
    files["examples"] = write_json(out / "examples.json", examples)
    md = f"# Best {len(best)} by {rank_by}\n\n{_markdown(examples['best'], cols)}\n"
    md += f"# Worst {len(worst)} by {rank_by}\n\n{_markdown(examples['worst'], cols)}"
    files["examples_md"] = atomic_write_text(out / "examples.md", md)
    png = length_histogram_png([it.prediction for it in items], [it.references for it in items])
    files["lengths"] = atomic_write_bytes(out / "lengths.png", png)

    has_images = any(it.image is not None for it in items)
    thumbs = {i: _thumbnail(items[i], out, i) for i in dict.fromkeys([*best, *worst])} if has_images else {}

    headline = [(key, html.fmt(metrics[key])) for key in METRIC_KEYS if metrics[key] is not None]
    unavailable = scores.settings.get("unavailable", {})
    score_rows = [[key, html.fmt(metrics[key]), unavailable.get(key, "")] for key in METRIC_KEYS]
    page_files = ["metrics.json", "per_item.jsonl", "examples.json", "examples.md", "lengths.png"]
    body = [
        html.cards([("items", scores.n), *headline]),
        html.section(
            "Scores",
            html.table(["metric", "value", "note"], score_rows, numeric=[1]),
            note="pycocoevalcap scale (0-1; CIDEr-D as pycocoevalcap returns it). Corpus-level values.",
        ),
        html.section("Caption length", html.img("lengths.png", alt="length histogram", cls="figure")),
        html.section(
            f"Best {len(best)} by {rank_by}", _examples_html([rows[i] for i in best], cols, thumbs, has_images)
        ),
        html.section(
            f"Worst {len(worst)} by {rank_by}", _examples_html([rows[i] for i in worst], cols, thumbs, has_images)
        ),
        html.section(
            "Settings",
            html.pre(json.dumps(scores.settings, indent=2, ensure_ascii=False)),
            html.details("Files in this folder", html.ul(page_files)),
        ),
    ]
    subtitle = f"{source or 'predictions'} - {scores.n} items"
    files["report"] = html.write_page(out / "report.html", "Caption evaluation", *body, subtitle=subtitle)
    return files
