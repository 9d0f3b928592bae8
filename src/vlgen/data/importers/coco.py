"""MS-COCO captions (`captions_train2017.json` style), optionally with the Karpathy split.

The annotations JSON is the source of truth for images and captions. With `karpathy_split`
(`dataset_coco.json` from Karpathy & Fei-Fei, 2015) each image gets the split listed there, matched by COCO
id (`cocoid`), so the 2014 file names in the Karpathy file work with 2017 images too (same ids).
restval -> train, val -> validation. Images of the annotations that the Karpathy file does not list are
left out and reported; without it, splits are seeded by image.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from vlgen.data.importers._common import (
    ImportLog,
    ImportOptions,
    ImportResult,
    check_images,
    finish_import,
    prepare_out_dir,
)
from vlgen.data.records import Record, check_file_name
from vlgen.errors import DataError

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "validation", "test": "test"}


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"invalid JSON ({e})", path=str(path)) from None


def _list_field(doc: Any, key: str, path: Path) -> list:
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        raise DataError(f"expected a JSON object with a list {key!r}", path=str(path))
    return doc[key]


def read_karpathy(path: Path) -> dict[int, str]:
    """Karpathy `dataset_coco.json` -> {coco id: split}."""
    splits: dict[int, str] = {}
    for i, im in enumerate(_list_field(_load_json(path), "images", path)):
        where = f"images[{i}]"
        if not isinstance(im, dict) or im.get("split") not in KARPATHY_SPLITS:
            got = im.get("split") if isinstance(im, dict) else im
            raise DataError(f"{where}: split {got!r} is not one of {', '.join(KARPATHY_SPLITS)}", path=str(path))
        cocoid = im.get("cocoid")
        if not isinstance(cocoid, int):  # older copies lack cocoid: the id is the number in the file name
            m = re.search(r"(\d+)\.\w+$", str(im.get("filename", "")))
            if not m:
                raise DataError(f"{where}: no 'cocoid' and no id in filename {im.get('filename')!r}", path=str(path))
            cocoid = int(m.group(1))
        splits[cocoid] = KARPATHY_SPLITS[im["split"]]
    return splits


def import_coco(
    annotations_json: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    karpathy_split: str | os.PathLike | None = None,
    opts: ImportOptions | None = None,
) -> ImportResult:
    """Import COCO captions into an imagefolder dataset at `out_dir` (one record per image, all its captions)."""
    opts = opts or ImportOptions()
    ann_path, images_dir = Path(annotations_json), Path(images_dir)
    if not images_dir.is_dir():
        raise DataError("images folder not found", path=str(images_dir))
    out = prepare_out_dir(out_dir, opts.overwrite)
    log = ImportLog(opts.on_error)
    doc = _load_json(ann_path)
    karpathy = read_karpathy(Path(karpathy_split)) if karpathy_split is not None else None

    files: dict[int, str] = {}
    for i, im in enumerate(_list_field(doc, "images", ann_path)):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or "file_name" not in im:
            log.error(f"images[{i}]", "needs an integer 'id' and a 'file_name'", path=str(ann_path))
            continue
        try:
            files[im["id"]] = check_file_name(im["file_name"])
        except DataError as e:
            log.error(f"images[{i}]", e.reason, path=str(ann_path))

    captions: dict[int, list[str]] = defaultdict(list)
    for i, ann in enumerate(_list_field(doc, "annotations", ann_path)):
        ok = isinstance(ann, dict) and isinstance(ann.get("caption"), str) and ann["caption"].strip()
        if not ok:
            log.error(f"annotations[{i}]", "needs a non-empty text 'caption'", path=str(ann_path))
            continue
        if ann.get("image_id") not in files:
            log.error(f"annotations[{i}]", f"image_id {ann.get('image_id')!r} is not in 'images'", path=str(ann_path))
            continue
        captions[ann["image_id"]].append(ann["caption"].strip())

    records = []
    for image_id, file_name in sorted(files.items()):
        split = None
        if karpathy is not None:
            split = karpathy.get(image_id)
            if split is None:
                log.exclude(file_name, f"image id {image_id} is not in the Karpathy split file; left out")
                continue
        if not captions.get(image_id):
            log.error(file_name, f"image id {image_id} has no captions")
            continue
        path = images_dir / file_name
        records.append(Record(file_name, captions[image_id], split, path, extra={"coco_id": image_id}))

    records = check_images(records, log, opts.max_pixels, opts.progress)
    info = {}
    if karpathy is not None:
        # Not items of this import (e.g. val2017 images when importing train2017): a count, not a report.
        info["karpathy_images_not_in_annotations"] = len(set(karpathy) - set(files))
    source = {"annotations": str(ann_path.resolve()), "images_dir": str(images_dir.resolve())}
    if karpathy_split is not None:
        source["karpathy_split"] = str(Path(karpathy_split).resolve())
    return finish_import(out, records, log, opts, importer="coco", source=source, info=info)
