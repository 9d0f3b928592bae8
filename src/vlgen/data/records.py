"""Records and the on-disk dataset format (Hugging Face imagefolder).

A dataset is a folder with images and a `metadata.jsonl`, one JSON object per line::

    {"file_name": "000123.png", "text": "a large red circle", "split": "train"}
    {"file_name": "img/7.jpg", "text": ["a dog runs", "a brown dog on grass"], "split": "test"}

`file_name` is relative to the folder, the caption column (default `text`) holds a string or a list of
references, `split` is optional (`train`/`validation`/`test`), any other key is kept in `Record.extra`.
`datasets.load_dataset("imagefolder", data_dir=DIR)` loads such a folder unchanged (the `split` column
comes through as an ordinary column).

`load_records` is strict: the first problem raises `DataError` naming file and line. `vlgen data
validate` (validate.py) reuses `parse_row` to list every problem instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vlgen.errors import DataError
from vlgen.fileio import atomic_file, write_jsonl

METADATA_NAME = "metadata.jsonl"
SPLITS = ("train", "validation", "test")
DEFAULT_CAPTION_COLUMN = "text"


@dataclass
class Record:
    """One image and its reference captions.

    `file_name` is the posix path relative to the dataset folder; `path` is where the image is on disk
    (inside the folder after loading; the source file when handed to `write_dataset`, which copies it).
    """

    file_name: str
    captions: list[str]
    split: str | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def caption(self) -> str:
        """The first reference (what a single-caption consumer such as the T2I trainer uses)."""
        return self.captions[0]


def check_file_name(file_name: Any) -> str:
    """Check a `file_name` value is a safe relative posix path; returns it. Raises DataError (no location)."""
    if not isinstance(file_name, str):
        raise DataError(f"'file_name' must be a string, got {type(file_name).__name__} {file_name!r}")
    if not file_name.strip():
        raise DataError("'file_name' is empty")
    bad = next((c for c in file_name if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        # NUL makes every OS call raise ValueError; the other C0 controls are never a real file name and
        # would garble the one-line messages that name the file.
        raise DataError(f"file_name {file_name!r} contains the control character {bad!r}; remove it")
    if "\\" in file_name:
        raise DataError(f"file_name {file_name!r} contains a backslash; use '/' as the separator")
    if file_name.startswith("/") or (len(file_name) > 1 and file_name[1] == ":"):
        raise DataError(f"file_name {file_name!r} is an absolute path; it must be relative to the dataset folder")
    parts = PurePosixPath(file_name).parts
    if ".." in parts:
        raise DataError(f"file_name {file_name!r} contains '..' and would escape the dataset folder")
    return file_name


def resolve_file_name(root: str | os.PathLike, file_name: Any) -> Path:
    """The on-disk path of `file_name` inside `root`; DataError if it is unsafe or a symlink leads outside."""
    check_file_name(file_name)
    root_real = Path(root).resolve()
    target = (Path(root) / file_name).resolve()  # follows symlinks, so a link pointing out is caught
    if not target.is_relative_to(root_real):
        raise DataError(f"file_name {file_name!r} resolves to {target}, outside the dataset folder (symlink?)")
    return Path(root) / file_name


def check_inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path`, found while listing the plain folder `root`; DataError if it resolves outside `root`.

    A symlink to a file elsewhere (`~/.ssh/id_rsa` named `x.png`) would otherwise be read, captioned or
    copied into a dataset; dataset folders refuse such links (`resolve_file_name`), plain folders too.
    """
    target = Path(path).resolve()
    if not target.is_relative_to(Path(root).resolve()):
        raise DataError(
            f"is a link to {target}, outside the folder {root}; copy the file into the folder or remove the link",
            path=str(path),
        )
    return Path(path)


def _parse_captions(value: Any, caption_column: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise DataError(f"caption column {caption_column!r} is an empty list")
    for c in items:
        if not isinstance(c, str):
            raise DataError(f"caption column {caption_column!r} holds {type(c).__name__} {c!r}, expected text")
        if not c.strip():
            raise DataError(f"empty caption in column {caption_column!r}")
    return list(items)


def parse_row(root: Path, raw: bytes, caption_column: str = DEFAULT_CAPTION_COLUMN) -> Record:
    """Parse one metadata line into a Record; raises DataError *without* location (the caller adds it)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"line is not valid UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})") from None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, got {type(row).__name__}")
    if "file_name" not in row:
        raise DataError("missing 'file_name'")
    path = resolve_file_name(root, row["file_name"])
    if caption_column not in row or row[caption_column] is None:
        raise DataError(f"missing caption column {caption_column!r} (columns: {', '.join(sorted(row))})")
    captions = _parse_captions(row[caption_column], caption_column)
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    extra = {k: v for k, v in row.items() if k not in ("file_name", caption_column, "split")}
    return Record(file_name=row["file_name"], captions=captions, split=split, path=path, extra=extra)


def iter_metadata_lines(dataset_dir: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, raw bytes) of each non-blank metadata line; DataError if the file is missing."""
    meta = Path(dataset_dir) / METADATA_NAME
    if not Path(dataset_dir).is_dir():
        raise DataError("dataset folder not found", path=str(dataset_dir))
    if not meta.is_file():
        raise DataError(f"no {METADATA_NAME} in the dataset folder", path=str(dataset_dir))
    # Bytes, not text: one bad byte should cost one line, not the whole file.
    for i, raw in enumerate(meta.read_bytes().split(b"\n"), start=1):
        if raw.strip():
            yield i, raw.rstrip(b"\r")


def load_records(
    dataset_dir: str | os.PathLike, split: str | None = None, caption_column: str = DEFAULT_CAPTION_COLUMN
) -> list[Record]:
    """Read `DIR/metadata.jsonl` into Records (file order), optionally only one split.

    Raises DataError naming file and line for the first malformed row or duplicate `file_name`, and if
    `split` is given but no row has it (an empty training set is never what the caller meant).
    Image files are not opened here; `vlgen data validate` checks them.
    """
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    root = Path(dataset_dir)
    meta = str(root / METADATA_NAME)
    records: list[Record] = []
    seen: dict[str, int] = {}
    for line_no, raw in iter_metadata_lines(root):
        try:
            rec = parse_row(root, raw, caption_column)
        except DataError as e:
            raise DataError(e.reason, path=meta, line=line_no) from None
        if rec.file_name in seen:
            first = seen[rec.file_name]
            raise DataError(f"duplicate file_name {rec.file_name!r} (first on line {first})", path=meta, line=line_no)
        seen[rec.file_name] = line_no
        records.append(rec)
    if split is not None:
        found = sorted({r.split or "<none>" for r in records})
        records = [r for r in records if r.split == split]
        if not records:
            raise DataError(f"no rows with split {split!r} (splits present: {', '.join(found) or 'none'})", path=meta)
    return records


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_file(dst) as tmp:
        shutil.copyfile(src, tmp)


def metadata_rows(records: Sequence[Record], caption_column: str = DEFAULT_CAPTION_COLUMN) -> list[dict[str, Any]]:
    """The JSON rows `write_dataset` writes: captions as a string when every record has exactly one,
    otherwise always a list (Arrow needs one type per column, so we never mix the two)."""
    as_list = any(len(r.captions) != 1 for r in records)
    with_split = any(r.split is not None for r in records)
    rows = []
    for r in records:
        row: dict[str, Any] = {"file_name": r.file_name, caption_column: list(r.captions) if as_list else r.captions[0]}
        if with_split:
            row["split"] = r.split
        for k, v in r.extra.items():
            if k in row or k == "split":
                raise DataError(f"record {r.file_name!r}: extra key {k!r} clashes with a reserved column")
            row[k] = v
        rows.append(row)
    return rows


def write_dataset(
    out_dir: str | os.PathLike,
    records: Iterable[Record],
    caption_column: str = DEFAULT_CAPTION_COLUMN,
    progress: bool = False,
) -> Path:
    """Write an imagefolder dataset: copy each `record.path` to `OUT/record.file_name`, then `metadata.jsonl`.

    Every file is written atomically and the metadata last, so an interrupted write never leaves a
    metadata.jsonl pointing at missing images. A record whose `path` already is its place in OUT (or is
    None with the file already there) is not copied. Returns the metadata path.
    """
    out = Path(out_dir)
    records = list(records)
    seen: set[str] = set()
    for r in records:  # check everything before writing anything
        try:
            check_file_name(r.file_name)
            _parse_captions(r.captions, caption_column)
        except DataError as e:
            raise DataError(f"record {r.file_name!r}: {e.reason}") from None
        if r.file_name in seen:
            raise DataError(f"duplicate file_name {r.file_name!r}")
        if r.split is not None and r.split not in SPLITS:
            raise DataError(f"record {r.file_name!r}: unknown split {r.split!r} (expected one of {', '.join(SPLITS)})")
        seen.add(r.file_name)
    rows = metadata_rows(records, caption_column)
    out.mkdir(parents=True, exist_ok=True)
    items: Iterable[Record] = records
    if progress:
        from vlgen.progress import track

        items = track(records, "copying images")
    for r in items:
        dst = out / r.file_name
        if r.path is None:
            if not dst.is_file():
                raise DataError(f"record {r.file_name!r} has no source path and {dst} does not exist")
            continue
        src = Path(r.path)
        if dst.exists() and src.resolve() == dst.resolve():
            continue
        if not src.is_file():
            raise DataError(f"record {r.file_name!r}: source image not found", path=str(src))
        _copy_atomic(src, dst)
    return write_jsonl(out / METADATA_NAME, rows)
