"""Streaming sources beside folders: WebDataset tar shards and parquet files with image bytes.

Both name each sample by a key and read its image only when it is decoded, so a source of millions of
samples costs a list of small references (~350 bytes each with the key), never the images:

* WebDataset shards (`DIR/*.tar`, `shards/{00000..00099}.tar`, a `.tar` file, or a folder of them): members
  are grouped into samples as `webdataset` does - the key is the member name up to the first dot of its
  base name (`a/000123.seg.png` -> key `a/000123`, extension `seg.png`), consecutive members with one key
  are one sample, extensions are matched lowercased. The image is the first member with an image extension
  (`jpg`, `jpeg`, `png`, `webp`, ... in IMAGE_EXTENSIONS order, or `image_column` when given); the caption
  is the `.txt` member, else the `.json` member's `caption`. Listing reads only the tar headers (`_scan_tar`;
  tarfile for unusual archives); a sample's image is read at its recorded offset. The `webdataset` package
  is not a dependency: its naming rules are a few lines, and random access (every N-th sample per process)
  needs offsets its streaming reader lacks.
* Parquet (a `.parquet` file, a folder of them, searched recursively, or a pattern): one row per sample,
  an image column holding bytes or an `{bytes, path}` struct (`image`, `jpg`, `png`, `jpeg`, `webp`, `img`
  in that order, or `image_column`), caption columns (`text`, `txt`, `caption`, or `caption_column`). This
  covers img2dataset's parquet output (`jpg`, `txt`, `key`) and Hugging Face datasets' parquet export
  (`image` {bytes, path}, `text`) unchanged. The key is the `file_name` column, else `key`, else the row
  number counted across the source's files in sorted order. Rows img2dataset marks as failed (`status` not
  `success`; they have no image) are not samples, as in its tar output. Columns are read in batches of
  BATCH_ROWS rows, never a whole file.

A folder holding image files stays an image folder (as before); a folder without images but with `.tar`
files is shards (img2dataset's per-shard `.parquet` metadata beside them is then ignored), else with
`.parquet` files is parquet.

Bad input follows the folders' rules: a sample whose image is missing or does not decode raises
`ImageLoadError` naming shard and key when it is decoded (so `--on-error skip` can skip it); a key in two
shards (or twice in one) is refused before anything runs, naming both.

The code: this module finds the source and holds the entry points; `shards_tar` and `shards_parquet` list
each format's samples; `shards_sample` holds the sample types and reads an image back. The types sit below
both readers (which build them) rather than here, so that no module imports another in a circle.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from vlgen.data.images import IMAGE_EXTENSIONS, load_image
from vlgen.data.records import METADATA_NAME, Record, load_records
from vlgen.data.shards_parquet import _iter_parquet
from vlgen.data.shards_sample import Sample, ShardSample
from vlgen.data.shards_tar import _iter_tar
from vlgen.errors import DataError

TAR_SUFFIX = ".tar"
PARQUET_SUFFIX = ".parquet"
_BRACE = re.compile(r"\{(?:(\d+)\.\.(\d+)|([^{}]*,[^{}]*))\}")  # {00000..00099} or {a,b}


def load_sample_image(ref: str | os.PathLike | ShardSample, *, input_size: tuple[int, int] | None = None):
    """Decode an input item's image: a file path (`load_image`) or a shard/parquet sample."""
    if isinstance(ref, ShardSample):
        return ref.load(input_size=input_size)
    return load_image(ref, input_size=input_size)


# ---------------------------------------------------------------------------------------------- sources


def expand_braces(pattern: str) -> list[str]:
    """Expand `{00000..00099}` ranges (zero padding kept) and `{a,b}` lists left to right, as braceexpand
    (webdataset's) does."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    if m.group(3) is not None:
        parts = m.group(3).split(",")
    else:
        lo, hi = m.group(1), m.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        step = 1 if int(hi) >= int(lo) else -1
        parts = [f"{i:0{width}d}" for i in range(int(lo), int(hi) + step, step)]
    return [x for part in parts for x in expand_braces(head + part + tail)]


def _is_pattern(text: str) -> bool:
    return bool(_BRACE.search(text) or glob.has_magic(text))


def find_source(raw: str | os.PathLike) -> tuple[str, list[Path]] | None:
    """("tar" | "parquet", files) when `raw` names shards or parquet; None for image files and folders.

    A folder with image files or a metadata.jsonl stays an image/dataset folder (None). Raises DataError for
    a pattern that matches nothing, a missing shard, or a pattern mixing tar and parquet files.
    """
    text = str(raw)
    p = Path(raw)
    if text.lower().endswith((".tar.gz", ".tgz")):  # random access (every N-th sample per process) needs plain tar
        raise DataError("compressed shards are not supported; decompress them to .tar (gunzip)", path=text)
    if p.exists() and p.is_file():
        suffix = p.suffix.lower()
        return (
            ({TAR_SUFFIX: "tar", PARQUET_SUFFIX: "parquet"}[suffix], [p])
            if suffix in (TAR_SUFFIX, PARQUET_SUFFIX)
            else None
        )
    if p.is_dir():
        if (p / METADATA_NAME).is_file():
            return None
        parquets = []
        for q in p.rglob("*"):  # one walk, left at the first image (an image folder: nothing more to do)
            suffix = q.suffix.lower()
            if suffix in IMAGE_EXTENSIONS and q.is_file():
                return None
            if suffix == PARQUET_SUFFIX and q.is_file():
                parquets.append(q)
        tars = sorted(q for q in p.glob("*") if q.suffix.lower() == TAR_SUFFIX and q.is_file())
        if tars:
            return "tar", tars
        return ("parquet", sorted(parquets)) if parquets else None
    if not p.exists() and _is_pattern(text):
        files: list[Path] = []
        for part in expand_braces(text):
            if glob.has_magic(part):
                files += [Path(f) for f in sorted(glob.glob(part))]
            elif Path(part).is_file():
                files.append(Path(part))
            else:
                raise DataError(f"no such shard (from the pattern {text!r})", path=part)
        if not files:
            raise DataError("no files match this pattern", path=text)
        kinds = {q.suffix.lower() for q in files}
        if kinds == {TAR_SUFFIX}:
            return "tar", list(dict.fromkeys(files))
        if kinds == {PARQUET_SUFFIX}:
            return "parquet", list(dict.fromkeys(files))
        raise DataError(
            f"the pattern matches {', '.join(sorted(kinds))} files; it must match only .tar shards or only .parquet",
            path=text,
        )
    return None


def iter_samples(
    kind: str,
    files: Sequence[Path],
    *,
    image_column: str | None = None,
    caption_column: str | None = None,
    with_captions: bool = False,
) -> Iterator[Sample]:
    """Samples of `files` in order (shards in the given order, members/rows in file order); streamed.

    Duplicate keys are not checked here (`list_samples` does); a key that is not a safe relative name is
    refused naming file and key.
    """
    if kind == "tar":
        for shard in files:
            yield from _iter_tar(shard, image_column, caption_column, with_captions)
    else:
        counter = [0]  # the row number across the source's files (the key when there is no key column)
        for f in files:
            yield from _iter_parquet(f, image_column, caption_column, with_captions, counter)


def split_files(kind: str, files: Sequence[Path], split: str, raw: str | os.PathLike) -> list[Path]:
    """The parquet files of one split as Hugging Face datasets names them (`train-00000-of-00002.parquet`,
    `train.parquet`, `.../train/0000.parquet`); shards have no splits (give the split's shards instead)."""
    if kind == "tar":
        raise DataError(
            f"--split {split!r}: WebDataset shards have no splits; give the split's shards instead", path=str(raw)
        )
    root = Path(raw) if Path(raw).is_dir() else None
    picked = []
    for f in files:
        parts = f.relative_to(root).parts[:-1] if root is not None else ()
        if f.stem == split or f.name.startswith(f"{split}-") or split in parts:
            picked.append(f)
    if not picked:
        raise DataError(
            f"--split {split!r}: no parquet file of that split (e.g. {split}-00000-of-00001.parquet)", path=str(raw)
        )
    return picked


def list_samples(
    raw: str | os.PathLike,
    *,
    image_column: str | None = None,
    caption_column: str | None = None,
    with_captions: bool = False,
    split: str | None = None,
) -> list[Sample] | None:
    """All samples of the shards/parquet `raw` names (None when it names image files or folders); with `split`,
    only that split's parquet files (`split_files`). See `collect_samples`."""
    found = find_source(raw)
    if found is None:
        return None
    kind, files = found
    if split is not None:
        files = split_files(kind, files, split, raw)
    return collect_samples(
        kind,
        files,
        label=str(raw),
        image_column=image_column,
        caption_column=caption_column,
        with_captions=with_captions,
    )


def collect_samples(
    kind: str,
    files: Sequence[Path],
    *,
    label: str,
    image_column: str | None = None,
    caption_column: str | None = None,
    with_captions: bool = False,
) -> list[Sample]:
    """The samples of `files` (one kind; a file listed twice counts once), in order. A key in two files (or
    twice in one shard) is refused with DataError naming both places; no sample at all too (`label` names
    the input)."""
    seen: dict[str, str] = {}
    samples = []
    files = list(dict.fromkeys(files))
    for s in iter_samples(
        kind, files, image_column=image_column, caption_column=caption_column, with_captions=with_captions
    ):
        first = seen.get(s.key)
        if first is not None:
            where = f"in {first} and in {s.ref.source}" if first != s.ref.source else f"twice in {first}"
            raise DataError(
                f"sample key {s.key!r} appears {where}; keys name the output rows and must be unique",
                path=s.ref.source,
            )
        seen[s.key] = s.ref.source
        samples.append(s)
    if not samples:
        raise DataError("no samples in these files", path=label)
    return samples


def load_reference_records(
    data: str | os.PathLike, split: str | None = None, caption_column: str = "text"
) -> list[Record]:
    """References to join predictions to: a dataset folder's records, or shards'/parquet's (key + captions).

    `split` picks parquet files by name (`split_files`); shards have none. `caption_column` is the dataset's
    column; for parquet the default `text` falls back to `txt`/`caption`, for shards it is `.txt`/`.json`.
    """
    found = find_source(data)
    if found is None:
        return load_records(data, split=split, caption_column=caption_column)
    column = None if caption_column == "text" else caption_column
    samples = list_samples(data, caption_column=column, with_captions=True, split=split)
    return [Record(file_name=s.key, captions=s.captions or [], path=None) for s in samples or []]
