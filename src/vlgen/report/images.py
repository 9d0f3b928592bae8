"""Inputs and outputs of `vlgen evaluate images`: which images and prompts are scored, and the files written.

Inputs (checked before any model loads; every error names the file and, for JSONL, the line):

GEN_DIR                 the image files directly inside it (IMAGE_EXTENSIONS), sorted by name, plus any
                        file a metadata line names in a sub-folder.
prompts, first found:   --prompts FILE   JSONL with `file_name` + `prompt` per line, or plain text with one
                                         prompt per line for the images in sorted file-name order
                                         (a JSONL file is recognised by its .jsonl suffix)
                        --data DIR       an imagefolder dataset: DIR/metadata.jsonl, `prompt` per line or
                                         else the caption column `text` (its first caption)
                        GEN_DIR/metadata.jsonl, as `vlgen generate` writes it (file_name, prompt, seed, ...)
                        Every generated image needs exactly one prompt and every prompt line an image:
                        missing, extra or duplicate file_names are errors, never skipped.
REF_DIR                 the image files directly inside it, sorted by name.

Outputs of `--out DIR`:

DIR/metrics.json        the --json object
DIR/per_image.jsonl     one line per generated image: index, file_name, prompt, per-image scores, meta
DIR/thumbs/*.jpg        thumbnails (generated and references) for the page
DIR/report.html         headline scores, the generated images in a grid with prompt and per-image scores,
                        the references beside them, and the settings
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlgen.data import IMAGE_EXTENSIONS, METADATA_NAME, load_image, probe_image, resolve_file_name
from vlgen.errors import ConfigError, DataError
from vlgen.fileio import atomic_file, read_jsonl_objects, write_json, write_jsonl
from vlgen.report import html

DEFAULT_MAX_SHOWN = 200  # images on the page; per_image.jsonl always has all of them


class ImageFiles(Sequence):
    """A lazy sequence of PIL images: decodes `paths[i]` (through `vlgen.data.load_image`) when indexed."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [load_image(p) for p in self.paths[i]]
        return load_image(self.paths[i])


@dataclass
class GeneratedSet:
    root: Path
    file_names: list[str]  # posix, relative to root, sorted
    prompts: list[str] | None
    prompt_source: str | None
    meta: list[dict[str, Any]] = field(default_factory=list)  # other metadata fields per image (seed, ...)

    @property
    def paths(self) -> list[Path]:
        return [self.root / f for f in self.file_names]


def list_images(folder: str | os.PathLike, what: str) -> list[str]:
    """Sorted names of the image files directly inside `folder`; DataError if it is missing or has none."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{what} folder not found", path=str(root))
    if not root.is_dir():
        raise DataError(f"{what} is not a folder", path=str(root))
    names = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in the {what} folder", path=str(root))
    return names


def _read_jsonl(path: Path, *, prompt_columns: tuple[str, ...]) -> dict[str, tuple[str, int, dict]]:
    """{file_name: (prompt, line, other fields)} from a JSONL file; DataError naming path:line on any problem."""
    rows: dict[str, tuple[str, int, dict]] = {}
    for n, obj in read_jsonl_objects(path):
        if "file_name" not in obj:
            raise DataError("missing 'file_name'", path=str(path), line=n)
        column = next((c for c in prompt_columns if c in obj), None)
        if column is None:
            raise DataError(f"missing {' or '.join(repr(c) for c in prompt_columns)}", path=str(path), line=n)
        prompt = obj[column]
        if isinstance(prompt, list) and column == "text" and prompt:
            prompt = prompt[0]  # an imagefolder caption list: the first caption is the prompt
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"'{column}' must be a non-empty string, got {prompt!r}", path=str(path), line=n)
        name = obj["file_name"]
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"'file_name' must be a non-empty string, got {name!r}", path=str(path), line=n)
        if name in rows:
            raise DataError(f"file_name {name!r} repeats line {rows[name][1]}", path=str(path), line=n)
        extra = {k: v for k, v in obj.items() if k not in ("file_name", column)}
        rows[name] = (prompt, n, extra)
    if not rows:
        raise DataError("no prompts in the file", path=str(path))
    return rows


def _join(root: Path, top_level: list[str], rows: dict[str, tuple[str, int, dict]], source: Path) -> GeneratedSet:
    """Pair images with prompt lines one-to-one; the first unmatched image or line is an error."""
    for name, (_, line, _) in rows.items():
        try:
            path = resolve_file_name(root, name)
        except DataError as e:
            raise DataError(e.reason, path=str(source), line=line) from None
        if not path.is_file():
            raise DataError(f"file_name {name!r} has no image in {root}", path=str(source), line=line)
    for name in top_level:
        if name not in rows:
            raise DataError(f"no prompt for this image in {source}", path=str(root / name))
    names = sorted(rows)
    return GeneratedSet(root, names, [rows[n][0] for n in names], str(source), [rows[n][2] for n in names])


def read_generated(
    gen_dir: str | os.PathLike, *, prompts: str | os.PathLike | None = None, data: str | os.PathLike | None = None
) -> GeneratedSet:
    """The generated images of `gen_dir` with their prompts (see the module docstring for the sources)."""
    root = Path(gen_dir)
    if prompts is not None and data is not None:
        raise ConfigError("give --prompts or --data, not both")
    top = list_images(root, "generated images")
    if prompts is not None:
        source = Path(prompts)
        if not source.is_file():
            raise DataError("prompts file not found", path=str(source))
        if source.suffix.lower() == ".jsonl":
            return _join(root, top, _read_jsonl(source, prompt_columns=("prompt",)), source)
        return _plain_prompts(root, top, source)
    if data is not None:
        meta = Path(data) / METADATA_NAME
        if not meta.is_file():
            raise DataError(f"no {METADATA_NAME} in the --data folder", path=str(data))
        return _join(root, top, _read_jsonl(meta, prompt_columns=("prompt", "text")), meta)
    meta = root / METADATA_NAME
    if meta.is_file():
        return _join(root, top, _read_jsonl(meta, prompt_columns=("prompt",)), meta)
    return GeneratedSet(root, top, None, None, [{} for _ in top])


def _plain_prompts(root: Path, top: list[str], source: Path) -> GeneratedSet:
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read prompts ({e})", path=str(source)) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError("empty prompt line (one prompt per image, in sorted file order)", path=str(source), line=n)
    if len(lines) != len(top):
        raise DataError(
            f"{len(lines)} prompts for {len(top)} images in {root} (one prompt per line, in sorted file-name order: "
            f"{top[0]} first)",
            path=str(source),
        )
    return GeneratedSet(root, top, [s.strip() for s in lines], str(source), [{} for _ in top])


def probe_all(paths: Sequence[Path]) -> None:
    """Header-check every image now, so a bad file fails before minutes of model work."""
    for p in paths:
        probe_image(p)


def per_image_rows(gen: GeneratedSet, scores) -> list[dict[str, Any]]:
    rows = []
    for i, name in enumerate(gen.file_names):
        row: dict[str, Any] = {"index": i, "file_name": name}
        if gen.prompts is not None:
            row["prompt"] = gen.prompts[i]
        row.update(scores.per_image[i])
        if gen.meta and gen.meta[i]:
            row["meta"] = gen.meta[i]
        rows.append(row)
    return rows


def _thumb(src: Path, dst: Path, max_side: int = 256) -> None:
    im = load_image(src)
    im.thumbnail((max_side, max_side))
    with atomic_file(dst) as tmp:
        im.save(tmp, format="JPEG", quality=85)


def _num(key: str, value: float | None) -> str:
    """Gram and KID are small (VGG19 Gram distances are ~1e-5): significant digits, not fixed decimals."""
    if value is None:
        return "n/a"
    return f"{value:.3g}" if key in ("Gram", "KID") else f"{value:.4f}"


def _tile(src: str, title: str, lines: Sequence[str]) -> html.Raw:
    body = "".join(f'<div class="k">{html.esc(x)}</div>' for x in lines)
    return html.Raw(f'<div class="card">{html.img(src, alt=title)}<div><b>{html.esc(title)}</b></div>{body}</div>')


def write_image_report(
    out_dir: str | os.PathLike,
    gen: GeneratedSet,
    references: Sequence[Path] | None,
    scores,
    *,
    max_shown: int = DEFAULT_MAX_SHOWN,
) -> dict[str, Path]:
    """Write metrics.json, per_image.jsonl, thumbnails and report.html into `out_dir`; returns their paths."""
    from vlgen.metrics.image import IMAGE_METRIC_KEYS, LOWER_IS_BETTER, PER_IMAGE_KEYS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    obj = scores.to_json()
    files = {"metrics": write_json(out / "metrics.json", obj)}
    rows = per_image_rows(gen, scores)
    files["per_image"] = write_jsonl(out / "per_image.jsonl", rows)

    unavailable = scores.settings.get("unavailable", {})
    headline = html.cards((k, _num(k, obj[k])) for k in IMAGE_METRIC_KEYS)
    summary_rows = []
    for k in IMAGE_METRIC_KEYS:
        s = scores.settings.get(k, {})
        model = s.get("model") or s.get("weights") or ""
        better = "lower" if k in LOWER_IS_BETTER else "higher"
        summary_rows.append(
            [
                k,
                "\u2014" if obj[k] is None else f"{obj[k]:.6g}",
                better,
                model,
                "" if obj[k] is not None else unavailable.get(k, ""),
            ]
        )
    summary = html.table(["metric", "value", "better", "model", "why not computed"], summary_rows, numeric=[1])

    shown = min(len(rows), max_shown)
    tiles = []
    for i, row in enumerate(rows[:shown]):
        rel = f"thumbs/gen_{i:05d}.jpg"
        _thumb(gen.root / row["file_name"], out / rel)
        lines = [row["prompt"]] if "prompt" in row else []
        lines += [f"{k}: {_num(k, row[k])}" for k in PER_IMAGE_KEYS if k in row]
        tiles.append(_tile(rel, row["file_name"], lines))
    gen_note = f"{len(rows)} generated images" + (
        f" (the first {shown} shown; all in per_image.jsonl)" if shown < len(rows) else ""
    )
    gen_grid = html.Raw(f'<div class="cards">{"".join(tiles)}</div>')
    ref_grid = html.Raw('<p class="muted">no references given</p>')
    if references:
        ref_tiles = []
        for j, path in enumerate(list(references)[:max_shown]):
            rel = f"thumbs/ref_{j:05d}.jpg"
            _thumb(path, out / rel)
            ref_tiles.append(_tile(rel, path.name, []))
        ref_note = f"{len(references)} references from {Path(references[0]).parent}"
        ref_grid = html.Raw(f'<p class="muted">{html.esc(ref_note)}</p><div class="cards">{"".join(ref_tiles)}</div>')
    # Generated grid and references side by side (the references narrower), so style can be compared at a glance.
    side_by_side = html.Raw(
        '<div style="display:flex;gap:24px;align-items:flex-start">'
        f'<div style="flex:3"><p class="muted">{html.esc(gen_note)}</p>{gen_grid}</div>'
        f'<div style="flex:1;min-width:170px">{ref_grid}</div></div>'
    )
    body = [html.section("Scores", headline, summary), html.section("Generated images and references", side_by_side)]
    body.append(html.section("Settings", html.pre(json.dumps(scores.settings, indent=2, ensure_ascii=False))))
    subtitle = f"{gen.root} - {scores.n_generated} generated, {scores.n_references} references"
    if gen.prompt_source:
        subtitle += f", prompts from {gen.prompt_source}"
    files["report"] = html.write_page(out / "report.html", "Image evaluation", *body, subtitle=subtitle)
    return files
