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
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlgen.data.images import IMAGE_EXTENSIONS, load_image, load_image_bytes
from vlgen.data.records import METADATA_NAME, Record, check_file_name, load_records
from vlgen.errors import DataError, ImageLoadError

TAR_SUFFIX = ".tar"
PARQUET_SUFFIX = ".parquet"
# webdataset's extensions for images, in the order a sample's image member is chosen.
IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
IMAGE_COLUMNS = ("image", "jpg", "png", "jpeg", "webp", "img")
CAPTION_COLUMNS = ("text", "txt", "caption")
KEY_COLUMNS = ("file_name", "key")
STATUS_COLUMN = "status"  # img2dataset: success, failed_to_download, failed_to_resize
BATCH_ROWS = 64  # parquet rows read at a time (images of one batch in memory, never a row group or file)
_PLAIN_KEY = re.compile(r"[\w.\-]+(?:/[\w.\-]+)*")  # relative, no control characters or backslashes
_BRACE = re.compile(r"\{(?:(\d+)\.\.(\d+)|([^{}]*,[^{}]*))\}")  # {00000..00099} or {a,b}


@dataclass(frozen=True, slots=True)
class ShardSample:
    """Where one sample's image is: `source` (a shard or parquet file) and how to find it there.

    Tar: `member` is the image member's name, `offset`/`size` its data in the file. Parquet: `column` is the
    image column, `offset` the row group, `size` the row within it. `member`/`column` None: the sample has no
    image (decoding raises ImageLoadError, so --on-error skip can report it). Picklable: worker processes
    can decode it.
    """

    source: str
    key: str
    member: str | None = None
    offset: int = 0
    size: int = 0
    column: str | None = None

    def __str__(self) -> str:  # the skip list's `path`: the shard; its `file_name` is the key
        return self.source

    @property
    def label(self) -> str:
        """How errors name the sample: `shards/00001.tar (sample '000123')`."""
        return f"{self.source} (sample {self.key!r})"

    def read_bytes(self) -> bytes:
        if self.column is not None:
            return _read_parquet_image(self)
        if self.member is None:
            exts = ", ".join(f".{e}" for e in IMAGE_EXTS)
            raise ImageLoadError(f"no image member ({exts}) in the sample", path=self.label)
        try:
            with open(self.source, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as e:
            raise ImageLoadError(f"cannot read the shard ({e.strerror or e})", path=self.label) from None
        if len(data) != self.size:
            raise ImageLoadError(f"member {self.member!r} is cut off (the shard is truncated)", path=self.label)
        return data

    def load(self, *, input_size: tuple[int, int] | None = None):
        """The sample's image as `load_image` returns it; ImageLoadError naming shard and key."""
        return load_image_bytes(self.read_bytes(), name=self.label, input_size=input_size)


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


@dataclass(slots=True)
class Sample:
    """One sample as listed: its key, where its image is, and (when asked for) its reference captions."""

    key: str
    ref: ShardSample
    captions: list[str] | None = None

    @property
    def source(self) -> str:
        """The shard or parquet file the sample is in."""
        return self.ref.source

    def load(self, *, input_size: tuple[int, int] | None = None):
        """Decode the image (read from its file now); ImageLoadError naming shard and key."""
        return self.ref.load(input_size=input_size)


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


# ---------------------------------------------------------------------------------------------- tar


def _split_name(name: str) -> tuple[str, str]:
    """webdataset's `base_plus_ext`: (key, extension), splitting at the first dot of the base name."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower() if dot else ""


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_FILE_TYPES = (b"0", b"\0", b"7")  # regular files, as tarfile's REGULAR_TYPES (less GNU sparse)


def _octal(field: bytes) -> int | None:
    """A header's octal number; None for base-256 or garbage (tarfile then reads the header)."""
    if field[:1] and field[0] & 0x80:
        return None
    try:
        return int(field.replace(b"\0", b" ").strip() or b"0", 8)
    except ValueError:
        return None


def _scan_tar(f, file_size: int) -> list[tuple[str, int, int]] | None:
    """(name, data offset, size) of each regular file, read from the headers alone; about 5x faster than
    tarfile's parser, which is what listing a million samples costs. Handles ustar (with its name prefix),
    GNU long names and pax `path`/`size` records - what tarfile, GNU tar and webdataset's TarWriter write.
    None for anything else (links, sparse files, pax globals, base-256 sizes, a bad checksum, a truncated
    end): tarfile then reads the shard and says what is wrong."""
    entries: list[tuple[str, int, int]] = []
    pos, long_name, pax = 0, None, {}
    while True:
        f.seek(pos)
        buf = f.read(_BLOCK)
        if len(buf) < _BLOCK or buf == _ZERO_BLOCK:
            return entries if buf == _ZERO_BLOCK or (not buf and entries) else None
        stored, size = _octal(buf[148:156]), _octal(buf[124:136])
        if stored is None or size is None or stored != sum(buf[:148]) + 256 + sum(buf[156:]):
            return None
        typ, data = buf[156:157], pos + _BLOCK
        if typ in (b"L", b"x"):
            if data + size > file_size:
                return None
            f.seek(data)
            payload = f.read(size)
            if typ == b"L":
                long_name = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
            else:
                pax = _pax_records(payload)
                if pax is None:
                    return None
            pos = data + -(-size // _BLOCK) * _BLOCK
            continue
        if "size" in pax:
            size = pax["size"]
        if typ in _FILE_TYPES:
            name = buf[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            prefix = buf[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if prefix:  # ustar splits a long name into prefix/name (tarfile joins it the same way)
                name = f"{prefix}/{name}"
            name = pax.get("path", long_name or name)
            if data + size > file_size:
                return None
            if not name.endswith("/"):  # an old-style directory otherwise
                entries.append((name, data, size))
        elif typ != b"5":  # directories are skipped; links, devices, sparse files: let tarfile read it
            return None
        pos, long_name, pax = data + -(-size // _BLOCK) * _BLOCK, None, {}


def _pax_records(payload: bytes) -> dict | None:
    """The `path` and `size` of a pax extended header ("LEN key=value\\n" records); None if malformed."""
    out: dict = {}
    i = 0
    while i < len(payload) and payload[i : i + 1] != b"\0":
        sp = payload.find(b" ", i)
        try:
            length = int(payload[i:sp])
        except ValueError:
            return None
        if sp < 0 or length <= 0:
            return None
        key, _, value = payload[sp + 1 : i + length - 1].partition(b"=")
        if key.startswith(b"GNU.sparse"):  # sparse data is laid out differently: tarfile's job
            return None
        if key == b"path":
            out["path"] = value.decode("utf-8", "surrogateescape")
        elif key == b"size":
            try:
                out["size"] = int(value)
            except ValueError:
                return None
        i += length
    return out


def _tar_entries(shard: Path) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of the shard's regular files, in order: `_scan_tar`, else tarfile's reading."""
    source = str(shard)
    try:
        with open(shard, "rb") as f:
            entries = _scan_tar(f, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise DataError(f"cannot read the shard ({e.strerror or e})", path=source) from None
    if entries is not None:
        yield from entries
        return
    try:
        tf = tarfile.open(shard, mode="r:")  # noqa: SIM115 - closed by the `with tf` below
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"not a readable tar shard ({e})", path=source) from None
    with tf:
        last = None
        try:
            while (m := tf.next()) is not None:
                tf.members.clear()  # TarFile keeps every header it has read; we need none of them
                if m.isfile():
                    last = m.name
                    yield m.name, m.offset_data, m.size
        except tarfile.TarError as e:
            after = f" after member {last!r}" if last else ""
            raise DataError(f"corrupt tar shard{after} ({e})", path=source) from None


def _iter_tar(shard: Path, image_column, caption_column, with_captions) -> Iterator[Sample]:
    source = str(shard)
    key, members = None, {}
    for entry in _tar_entries(shard):
        k, ext = _split_name(entry[0])
        if not k or k.rpartition("/")[2].startswith("__"):  # webdataset's own entries (__index__ ...)
            continue
        if k != key:
            if key is not None:
                yield _tar_sample(source, key, members, image_column, caption_column, with_captions)
            key, members = k, {}
        if ext in members:
            raise DataError(f"sample {k!r} has two {ext!r} members", path=source)
        members[ext] = entry
    if key is not None:
        yield _tar_sample(source, key, members, image_column, caption_column, with_captions)


def _tar_sample(source, key, members, image_column, caption_column, with_captions) -> Sample:
    _check_key(key, source)
    exts = (image_column.lower().lstrip("."),) if image_column else IMAGE_EXTS
    image = next((members[e] for e in exts if e in members), None)
    ref = ShardSample(source, key, *image) if image else ShardSample(source, key)
    captions = _tar_captions(source, key, members, caption_column) if with_captions else None
    return Sample(key, ref, captions)


def _tar_captions(source, key, members, caption_column) -> list[str]:
    label = f"{source} (sample {key!r})"
    text_ext = caption_column.lower() if caption_column else "txt"
    field = caption_column or "caption"
    if text_ext in members:
        data = _member_bytes(source, members[text_ext], label)
        try:
            return _captions([data.decode("utf-8").strip()], f".{text_ext}", label)
        except UnicodeDecodeError:
            raise DataError(f"the .{text_ext} member is not UTF-8 text", path=label) from None
    if "json" in members:
        data = _member_bytes(source, members["json"], label)
        try:
            obj = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"the .json member is not valid JSON ({e})", path=label) from None
        if not isinstance(obj, dict) or obj.get(field) is None:
            raise DataError(f"no caption: the .json member has no {field!r}", path=label)
        return _captions(obj[field], f".json {field!r}", label)
    raise DataError(f"no caption: the sample has no .{text_ext} member and no .json with {field!r}", path=label)


def _member_bytes(source: str, entry: tuple[str, int, int], label: str) -> bytes:
    name, offset, size = entry
    with open(source, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise DataError(f"member {name!r} is cut off (the shard is truncated)", path=label)
    return data


# ---------------------------------------------------------------------------------------------- parquet


def _pq():
    import pyarrow.parquet as pq  # a dependency (pyproject); imported on use, `import vlgen.data` stays light

    return pq


def _open_parquet(path: Path):
    try:
        return _pq().ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for a file that is not parquet
        raise DataError(f"not a readable parquet file ({e})", path=str(path)) from None


def _pick(names: Sequence[str], wanted: str | None, defaults: Sequence[str], what: str, option: str, path: Path):
    if wanted is not None:
        if wanted not in names:
            raise DataError(
                f"no {what} column {wanted!r} (columns: {', '.join(names)}); check {option}", path=str(path)
            )
        return wanted
    found = next((c for c in defaults if c in names), None)
    if found is None:
        raise DataError(
            f"no {what} column ({' / '.join(defaults)}; columns: {', '.join(names)}); name it with {option}",
            path=str(path),
        )
    return found


def _iter_parquet(path: Path, image_column, caption_column, with_captions, counter) -> Iterator[Sample]:
    import pyarrow as pa

    pf = _open_parquet(path)
    schema = pf.schema_arrow
    names = list(schema.names)
    column = _pick(names, image_column, IMAGE_COLUMNS, "image", "--image-column", path)
    ctype = schema.field(column).type
    ok = pa.types.is_binary(ctype) or pa.types.is_large_binary(ctype)
    ok = ok or (pa.types.is_struct(ctype) and ctype.get_field_index("bytes") >= 0)
    if not ok:
        raise DataError(
            f"image column {column!r} holds {ctype}, not image bytes or an {{bytes, path}} struct", path=str(path)
        )
    key_column = next((c for c in KEY_COLUMNS if c in names), None)
    cap_column = (
        _pick(names, caption_column, CAPTION_COLUMNS, "caption", "--caption-column", path) if with_captions else None
    )
    # img2dataset's parquet keeps a row for each failed download (status failed_to_download, no image); its
    # tar output has no sample for them, so neither does its parquet here.
    status_column = STATUS_COLUMN if STATUS_COLUMN in names else None
    columns = [c for c in (key_column, cap_column, status_column) if c is not None]
    source = str(path)
    first_row = 0  # of the row group, in the file
    for rg in range(pf.num_row_groups):
        n = pf.metadata.row_group(rg).num_rows
        batches = pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[rg], columns=columns) if columns else None
        row = 0
        while row < n:
            if batches is not None:
                batch = next(batches).to_pydict()
                keys, caps, status = (batch.get(c) if c else None for c in (key_column, cap_column, status_column))
                size = len(next(iter(batch.values())))
            else:
                keys, caps, status, size = None, None, None, min(BATCH_ROWS, n - row)
            for i in range(size):
                number = counter[0]  # the row number across the source's files
                counter[0] += 1
                if status is not None and status[i] not in (None, "success"):
                    continue
                if keys is not None:
                    if keys[i] is None:
                        raise DataError(f"row {first_row + row + i}: {key_column!r} is empty", path=source)
                    key = str(keys[i])
                else:
                    key = str(number)
                _check_key(key, source)
                ref = ShardSample(source, key, offset=rg, size=row + i, column=column)
                captions = None
                if cap_column is not None:
                    captions = _captions(caps[i], f"column {cap_column!r}", f"{source} (sample {key!r})")
                yield Sample(key, ref, captions)
            row += size
        first_row += n


class _ParquetCursor:
    """One open reader per process: samples are decoded in order, so the next one is almost always in the
    batch already read or the next; going back (a retry, another order) reopens the row group. Locked: the
    server or a thread pool may decode from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.where: tuple | None = None
        self.batches: Iterator | None = None
        self.start, self.rows = 0, []

    def read(self, ref: ShardSample) -> bytes:
        with self.lock:
            where = (ref.source, ref.column, ref.offset)  # file, image column, row group
            if self.where != where or ref.size < self.start:
                pf = _open_parquet(Path(ref.source))
                self.batches = pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[ref.offset], columns=[ref.column])
                self.where, self.start, self.rows = where, 0, []
            while ref.size >= self.start + len(self.rows):
                try:
                    batch = next(self.batches)
                except StopIteration:
                    self.where = None
                    raise ImageLoadError("the row is not in the file any more (rewritten?)", path=ref.label) from None
                self.start += len(self.rows)
                self.rows = batch.column(0).to_pylist()
            value = self.rows[ref.size - self.start]
        if isinstance(value, dict):  # Hugging Face's {bytes, path}
            value = value.get("bytes")
        if value is None:
            raise ImageLoadError(f"no image (null in column {ref.column!r})", path=ref.label)
        return value


_cursor = _ParquetCursor()
# A forked child (a caption input worker) opens its own reader: pyarrow's state and the lock are per process.
os.register_at_fork(after_in_child=_cursor.__init__)


def _read_parquet_image(ref: ShardSample) -> bytes:
    return _cursor.read(ref)


# ---------------------------------------------------------------------------------------------- shared


def _check_key(key: str, source: str) -> None:
    if _PLAIN_KEY.fullmatch(key) and "/../" not in f"/{key}/":  # the common case, without check_file_name's cost
        return
    try:
        check_file_name(key)
    except DataError as e:
        raise DataError(f"sample key: {e.reason}", path=source) from None


def _captions(value: Any, what: str, label: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(c, str) and c.strip() for c in items):
        raise DataError(f"no caption: {what} is {value!r}", path=label)
    return list(items)
