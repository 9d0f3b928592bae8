"""A listed sample (`Sample`) and where its image is (`ShardSample`), with how the image is read back: a tar
member at its recorded offset, a parquet row through one cursor per process.

Both readers (`shards_tar`, `shards_parquet`) build these and `shards` re-exports them; reading a parquet row
back lives here, not in `shards_parquet`, because `ShardSample.read_bytes` needs it and `shards_parquet` needs
`ShardSample` - one module below both keeps the imports acyclic. The underscored helpers are shared by the
`shards*` modules only.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlgen.data.images import IMAGE_EXTENSIONS, load_image_bytes
from vlgen.data.records import check_file_name
from vlgen.errors import DataError, ImageLoadError

# webdataset's extensions for images, in the order a sample's image member is chosen.
IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)
BATCH_ROWS = 64  # parquet rows read at a time (images of one batch in memory, never a row group or file)
_PLAIN_KEY = re.compile(r"[\w.\-]+(?:/[\w.\-]+)*")  # relative, no control characters or backslashes


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


# ---------------------------------------------------------------------------------------------- parquet


def _pq():
    import pyarrow.parquet as pq  # a dependency (pyproject); imported on use, `import vlgen.data` stays light

    return pq


def _open_parquet(path: Path):
    try:
        return _pq().ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for a file that is not parquet
        raise DataError(f"not a readable parquet file ({e})", path=str(path)) from None


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
