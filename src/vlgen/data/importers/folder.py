"""A plain folder of images, captioned either by same-name `.txt` sidecars or by one CSV/JSONL file.

* sidecars: `cat.jpg` + `cat.txt` (UTF-8; the whole file, stripped, is one caption);
* `--captions FILE`: CSV with a header, or JSONL, with a file column (`file_name`, `file` or `image`, relative
  to SRC) and a caption column (`caption` or `text`); several rows for one file give several references.

Images without a caption and captions without an image are reported, never dropped silently. Sub-folders are
kept in `file_name` (`a/b.png`); splits are seeded by image.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from pathlib import Path

from vlgen.data.images import IMAGE_EXTENSIONS
from vlgen.data.importers._common import (
    ImportLog,
    ImportOptions,
    ImportResult,
    check_images,
    finish_import,
    prepare_out_dir,
)
from vlgen.data.records import Record, check_inside, resolve_file_name
from vlgen.errors import DataError

FILE_COLUMNS = ("file_name", "file", "image")
CAPTION_COLUMNS = ("caption", "text")


def _list_images(src: Path) -> dict[str, Path]:
    found = {}
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith("."):
            found[p.relative_to(src).as_posix()] = check_inside(src, p)  # no links out of the folder
    return found


def _read_caption_rows(path: Path, log: ImportLog) -> list[tuple[int, str, str]]:
    """(line, file, caption) rows from a CSV or JSONL captions file."""
    if not path.is_file():
        raise DataError("captions file not found", path=str(path))
    try:
        text = path.read_bytes().decode("utf-8-sig")  # spreadsheet exports often start with a BOM
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 at byte {e.start}", path=str(path)) from None
    raw_rows: list[tuple[int, object]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    raw_rows.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    log.error(f"line {i}", f"invalid JSON ({e.msg})", path=str(path), line=i)
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        raw_rows = [(reader.line_num, row) for row in reader]
        # DictReader's line_num after reading a row is that row's last physical line: good enough for csv.
    rows = []
    for i, row in raw_rows:
        if not isinstance(row, dict):
            log.error(f"line {i}", "expected an object with file and caption", path=str(path), line=i)
            continue
        fcol = next((c for c in FILE_COLUMNS if c in row), None)
        ccol = next((c for c in CAPTION_COLUMNS if c in row), None)
        if fcol is None or ccol is None:
            raise DataError(
                f"needs a file column ({'/'.join(FILE_COLUMNS)}) and a caption column ({'/'.join(CAPTION_COLUMNS)}); "
                f"found {', '.join(map(str, row))}",
                path=str(path),
                line=i,
            )
        f, c = row[fcol], row[ccol]
        if not isinstance(f, str) or not f.strip():
            log.error(f"line {i}", f"empty {fcol!r}", path=str(path), line=i)
        elif not isinstance(c, str) or not c.strip():
            log.error(f, f"empty {ccol!r}", path=str(path), line=i)
        else:
            rows.append((i, f.strip(), c.strip()))
    return rows


def import_folder(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    captions_file: str | os.PathLike | None = None,
    opts: ImportOptions | None = None,
) -> ImportResult:
    """Import images + sidecar `.txt` captions (or a CSV/JSONL captions file) into an imagefolder dataset."""
    opts = opts or ImportOptions()
    src = Path(src)
    if not src.is_dir():
        raise DataError("source folder not found", path=str(src))
    out = prepare_out_dir(out_dir, opts.overwrite)
    if out.resolve() == src.resolve() or out.resolve().is_relative_to(src.resolve()):
        raise DataError("output folder must not be the source folder or inside it", path=str(out))
    log = ImportLog(opts.on_error)
    images = _list_images(src)
    captions: dict[str, list[str]] = defaultdict(list)

    if captions_file is None:
        for rel, img in images.items():
            txt = img.with_suffix(".txt")
            if not txt.is_file():
                log.error(rel, f"no caption sidecar {txt.name}", path=str(img))
                continue
            try:
                caption = txt.read_bytes().decode("utf-8-sig").strip()
            except UnicodeDecodeError as e:
                log.error(rel, f"caption file is not valid UTF-8 at byte {e.start}", path=str(txt))
                continue
            if not caption:
                log.error(rel, "caption sidecar is empty", path=str(txt))
                continue
            captions[rel].append(caption)
        stems = {p.with_suffix("").as_posix() for p in map(Path, images)}
        for txt in sorted(src.rglob("*.txt")):
            rel = txt.relative_to(src).with_suffix("").as_posix()
            if rel not in stems:
                log.exclude(txt.relative_to(src).as_posix(), "caption file with no image of the same name")
    else:
        cap_path = Path(captions_file)
        for line, f, c in _read_caption_rows(cap_path, log):
            try:
                resolve_file_name(src, f)
            except DataError as e:
                log.error(f, e.reason, path=str(cap_path), line=line)
                continue
            if f not in images:
                reason = "listed in the captions file but no such image in the source folder"
                log.error(f, reason, path=str(cap_path), line=line)
                continue
            captions[f].append(c)
        for rel in images:
            if rel not in captions:
                log.exclude(rel, f"image has no caption in {cap_path.name}; left out")

    records = [Record(file_name=rel, captions=caps, path=images[rel]) for rel, caps in sorted(captions.items())]
    records = check_images(records, log, opts.max_pixels, opts.progress)
    source = {
        "src": str(src.resolve()),
        "captions": str(Path(captions_file).resolve()) if captions_file else "sidecars",
    }
    return finish_import(out, records, log, opts, importer="folder", source=source)
