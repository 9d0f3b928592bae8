"""Parquet files with image bytes: picking the image, caption and key columns and listing the rows as samples
(see `vlgen.data.shards` for the columns looked for). Reading a row's image back is `shards_sample`'s."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from vlgen.data.shards_sample import BATCH_ROWS, Sample, ShardSample, _captions, _check_key, _open_parquet
from vlgen.errors import DataError

IMAGE_COLUMNS = ("image", "jpg", "png", "jpeg", "webp", "img")
CAPTION_COLUMNS = ("text", "txt", "caption")
KEY_COLUMNS = ("file_name", "key")
STATUS_COLUMN = "status"  # img2dataset: success, failed_to_download, failed_to_resize


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
