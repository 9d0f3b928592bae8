"""Reading what is evaluated: prediction files (JSONL), joined to a dataset's references, and metrics.json.

Two prediction formats, one JSON object per line:

* self-contained: ``{"prediction": "...", "references": ["...", ...], "id": "...", "file_name": "..."}``
  (`id`/`file_name` optional);
* as `vlgen caption` writes them, joined to a dataset with `data_dir`: ``{"file_name": "...", "caption": "..."}``
  (`prediction` is accepted in place of `caption`); references come from the dataset by `file_name`.

Strict: the first problem raises DataError with the file and line; nothing is skipped except blank lines.
An empty prediction ("") is a valid (bad) prediction and is scored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlgen.errors import DataError
from vlgen.fileio import read_jsonl_objects


@dataclass
class CaptionItem:
    prediction: str
    references: list[str]
    line: int  # 1-based line in the prediction file
    id: str | None = None
    file_name: str | None = None
    image: Path | None = None  # on-disk image when known (joined to a dataset)

    @property
    def label(self) -> str:
        return self.id or self.file_name or f"line {self.line}"


def _lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError("prediction file not found", path=str(path))
    rows = read_jsonl_objects(path)
    if not rows:
        raise DataError("empty file: no predictions to evaluate", path=str(path))
    return rows


def _text(row: dict, key: str, path: Path, line: int) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"'{key}' must be a string, got {type(value).__name__} {value!r}", path=str(path), line=line)
    return value


def _optional_str(row: dict, key: str, path: Path, line: int) -> str | None:
    if row.get(key) is None:
        return None
    return _text(row, key, path, line)


def _references(row: dict, path: Path, line: int) -> list[str]:
    refs = row["references"]
    if isinstance(refs, str):
        refs = [refs]  # a single reference written as a plain string is unambiguous
    if not isinstance(refs, list):
        raise DataError(f"'references' must be a list of strings, got {type(refs).__name__}", path=str(path), line=line)
    if not refs:
        raise DataError("'references' is an empty list", path=str(path), line=line)
    for j, r in enumerate(refs):
        if not isinstance(r, str) or not r.strip():
            raise DataError(f"references[{j}] is not a non-empty string: {r!r}", path=str(path), line=line)
    return refs


def read_predictions(
    path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str | None = None,
    caption_column: str = "text",
    require_references: bool = True,
) -> list[CaptionItem]:
    """Items to score, in file order. With `data_dir`, references (and images) come from the dataset.
    `require_references=False` (reference-free CLIPScore): a line without `data_dir` may lack 'references'
    (its item gets []) and may name its caption 'caption', as `vlgen caption` writes it."""
    path = Path(path)
    rows = _lines(path)
    if data_dir is None:
        items = []
        for no, row in rows:
            key = "prediction" if "prediction" in row or require_references else "caption"
            if key not in row:
                hint = " (lines with 'caption' are `vlgen caption` output: pass --data DIR to join references)"
                hint = hint if "caption" in row else "" if require_references else " (or 'caption')"
                raise DataError("missing 'prediction'" + hint, path=str(path), line=no)
            if "references" not in row and require_references:
                raise DataError(
                    "missing 'references' (or pass --data DIR to take them from a dataset)", path=str(path), line=no
                )
            items.append(
                CaptionItem(
                    prediction=_text(row, key, path, no),
                    references=_references(row, path, no) if "references" in row else [],
                    line=no,
                    id=None if row.get("id") is None else str(row["id"]),
                    file_name=_optional_str(row, "file_name", path, no),
                )
            )
        return items

    from vlgen.data.shards import load_reference_records  # a dataset folder, or shards/parquet (by key)

    records = {r.file_name: r for r in load_reference_records(data_dir, split=split, caption_column=caption_column)}
    where = f"{data_dir}" + (f" (split {split!r})" if split else "")
    items, seen = [], {}
    for no, row in rows:
        if "file_name" not in row:
            raise DataError("missing 'file_name' (needed to join with --data)", path=str(path), line=no)
        key = "caption" if "caption" in row else "prediction" if "prediction" in row else None
        if key is None:
            raise DataError("missing 'caption' (or 'prediction')", path=str(path), line=no)
        fn = _text(row, "file_name", path, no)
        if fn in seen:
            raise DataError(f"duplicate file_name {fn!r} (first on line {seen[fn]})", path=str(path), line=no)
        seen[fn] = no
        rec = records.get(fn)
        if rec is None:
            raise DataError(f"file_name {fn!r} is not in the dataset {where}", path=str(path), line=no)
        items.append(
            CaptionItem(
                prediction=_text(row, key, path, no),
                references=list(rec.captions),
                line=no,
                id=None if row.get("id") is None else str(row["id"]),
                file_name=fn,
                image=rec.path,
            )
        )
    return items


def read_metrics_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metrics object if `path` is a metrics.json (one JSON object with metric keys), else None."""
    from vlgen.metrics import METRIC_KEYS

    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError):
        return None
    if isinstance(obj, dict) and any(k in obj for k in METRIC_KEYS) and "prediction" not in obj:
        return obj
    return None
