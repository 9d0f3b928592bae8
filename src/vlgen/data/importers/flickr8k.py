"""Flickr8k (Hodosh et al., 2013) from the official download, official splits kept.

SRC may hold the files anywhere below it (the usual unzip gives `Flickr8k_text/` and `Flicker8k_Dataset/`):
* `Flickr8k.token.txt`: `IMAGE.jpg#N<TAB>caption`, 5 per image;
* `Flickr_8k.trainImages.txt` / `.devImages.txt` / `.testImages.txt`: 6000/1000/1000 image names;
* the 8,091 JPEGs.

Known quirks of the real files, reported (never silently dropped) in OUT/skipped.jsonl:
* 91 images are in no split list; they are left out.
* 5 captions belong to `2258277193_586949ec62.jpg.1`, an id with no image file; they are left out.
* macOS unzip leftovers (`__MACOSX/`, `._*.jpg`) are not images and are ignored.
"""

from __future__ import annotations

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
from vlgen.data.records import Record
from vlgen.errors import DataError

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "validation": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


def _is_junk(p: Path) -> bool:
    return "__MACOSX" in p.parts or p.name.startswith("._")


def find_unique(src: Path, name: str) -> Path:
    """The one file called `name` below src; DataError if there are none or several."""
    hits = sorted(p for p in src.rglob(name) if p.is_file() and not _is_junk(p))
    if not hits:
        raise DataError(f"{name} not found anywhere below the source folder", path=str(src))
    if len(hits) > 1:
        raise DataError(f"{name} found {len(hits)} times ({', '.join(map(str, hits[:3]))}); keep one", path=str(src))
    return hits[0]


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 at byte {e.start}", path=str(path)) from None


def parse_tokens(path: Path, log: ImportLog) -> dict[str, list[str]]:
    """`IMAGE#N<TAB>caption` lines -> {image id: [captions in file order]}."""
    captions: dict[str, list[str]] = defaultdict(list)
    for i, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image_id, hash_, n = key.rpartition("#")
        if not tab or not hash_ or not image_id or not n.isdigit():
            log.error(f"line {i}", f"expected 'IMAGE.jpg#N<TAB>caption', got {line[:60]!r}", path=str(path), line=i)
            continue
        if not caption.strip():
            log.error(f"{key}", "empty caption", path=str(path), line=i)
            continue
        captions[image_id].append(caption.strip())
    return dict(captions)


def import_flickr8k(
    src: str | os.PathLike, out_dir: str | os.PathLike, opts: ImportOptions | None = None
) -> ImportResult:
    """Import an unzipped official Flickr8k download into an imagefolder dataset at `out_dir`."""
    opts = opts or ImportOptions()
    src = Path(src)
    if not src.is_dir():
        raise DataError("source folder not found", path=str(src))
    out = prepare_out_dir(out_dir, opts.overwrite)
    log = ImportLog(opts.on_error)
    token_path = find_unique(src, TOKEN_FILE)
    split_paths = {split: find_unique(src, name) for split, name in SPLIT_FILES.items()}

    captions = parse_tokens(token_path, log)
    split_of: dict[str, str] = {}
    in_two_splits: set[str] = set()
    for split, path in split_paths.items():
        for i, line in enumerate(_read_lines(path), start=1):
            name = line.strip()
            if not name:
                continue
            if name in split_of and split_of[name] != split:
                # Kept in either split it would leak between training and evaluation: left out of both, as
                # the report says (it used to say "skipped" and keep the image in its first split).
                log.error(
                    name, f"listed in both {split_of[name]} and {split}; left out of both", path=str(path), line=i
                )
                in_two_splits.add(name)
                continue
            split_of[name] = split

    images: dict[str, Path] = {}
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not _is_junk(p):
            if p.name in images:
                raise DataError(f"image {p.name} found twice: {images[p.name]} and {p}", path=str(src))
            images[p.name] = p

    records = []
    for name in sorted(set(split_of) | set(images) | set(captions)):
        if name in in_two_splits:  # reported above
            continue
        where = split_of.get(name)
        if name not in images:
            if where is not None:
                log.error(name, f"listed in {SPLIT_FILES[where]} but the image file is missing")
            else:  # the real token file's '2258277193_586949ec62.jpg.1' lands here
                n = len(captions.get(name, []))
                log.exclude(name, f"{n} caption(s) in {TOKEN_FILE} for an id with no image file; left out")
            continue
        if where is None:
            log.exclude(name, "image is in no official split list; left out")
            continue
        if name not in captions:
            log.error(name, f"no captions in {TOKEN_FILE}")
            continue
        records.append(Record(file_name=name, captions=captions[name], split=where, path=images[name]))

    records = check_images(records, log, opts.max_pixels, opts.progress)
    return finish_import(
        out,
        records,
        log,
        opts,
        importer="flickr8k",
        source={"src": str(src.resolve()), "token_file": str(token_path.relative_to(src))},
    )
