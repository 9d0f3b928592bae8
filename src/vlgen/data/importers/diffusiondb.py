"""DiffusionDB (Wang et al., 2022): a seeded random sample of (image, prompt) pairs for prompt inversion.

SRC holds `metadata.parquet` (one row per image: image_name, prompt, part_id, seed, step, cfg, sampler,
width, height, user_name, timestamp, image_nsfw, prompt_nsfw) and some of the parts, either unzipped
(`part-000001/<image_name>`) or as downloaded (`part-000001.zip` holding the images and `part-000001.json`).
Only rows whose part is present can be sampled: users download a few parts of 2,000 but the metadata of
all of them. The prompt becomes the caption (`text`); generation settings are kept as extra columns.
"""

from __future__ import annotations

import math
import os
import random
import zipfile
from pathlib import Path
from typing import Any

from vlgen.data.images import load_image_bytes
from vlgen.data.importers._common import ImportLog, ImportOptions, ImportResult, finish_import, prepare_out_dir
from vlgen.data.records import Record, check_file_name
from vlgen.errors import DataError, ImageLoadError
from vlgen.fileio import atomic_write_bytes

METADATA_FILE = "metadata.parquet"
REQUIRED_COLUMNS = ("image_name", "prompt", "part_id")
# Generation settings worth keeping next to the prompt; user_name/timestamp are left out on purpose.
EXTRA_COLUMNS = ("seed", "step", "cfg", "sampler", "width", "height", "image_nsfw", "prompt_nsfw")


def _part_name(part_id: int) -> str:
    return f"part-{part_id:06d}"


def _clean(value: Any) -> Any:
    # NaN is not JSON (and Arrow's JSON reader rejects it): store missing numbers as null.
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_metadata(path: Path, part_ids: list[int]) -> tuple[list[dict[str, Any]], int]:
    """Rows of the parts in `part_ids` (filtered in Arrow: the full metadata has 2M rows), and the total row count."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{METADATA_FILE} not found in the source folder", path=str(path.parent))
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError variants for non-parquet files
        raise DataError(f"not a readable parquet file ({e})", path=str(path)) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} (has: {', '.join(schema.names)})", path=str(path))
    columns = [*REQUIRED_COLUMNS, *(c for c in EXTRA_COLUMNS if c in schema.names)]
    table = pq.read_table(path, columns=columns)
    present = table.filter(pc.is_in(table["part_id"], value_set=pa.array(part_ids, table.schema.field("part_id").type)))
    return present.to_pylist(), table.num_rows


def _available_parts(src: Path) -> dict[int, Path]:
    parts: dict[int, Path] = {}
    for p in sorted(src.iterdir()):
        stem = p.name.removesuffix(".zip")
        if not stem.startswith("part-") or not stem[5:].isdigit():
            continue
        if p.is_dir() or (p.is_file() and p.suffix == ".zip"):
            parts.setdefault(int(stem[5:]), p)  # a folder sorts before its zip: prefer the unzipped copy
    return parts


def import_diffusiondb(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    sample: int | None = None,
    opts: ImportOptions | None = None,
) -> ImportResult:
    """Import a seeded sample of `sample` images (all available when None) into an imagefolder dataset."""
    opts = opts or ImportOptions()
    src = Path(src)
    if not src.is_dir():
        raise DataError("source folder not found", path=str(src))
    if sample is not None and sample <= 0:
        raise DataError(f"--sample must be a positive number, got {sample}")
    out = prepare_out_dir(out_dir, opts.overwrite)
    log = ImportLog(opts.on_error)
    meta_path = src / METADATA_FILE
    parts = _available_parts(src)
    if not meta_path.is_file():
        raise DataError(f"{METADATA_FILE} not found in the source folder", path=str(src))
    if not parts:
        raise DataError("no part-XXXXXX folders or part-XXXXXX.zip files next to the metadata", path=str(src))
    rows, n_rows = read_metadata(meta_path, sorted(parts))
    candidates = sorted(rows, key=lambda r: str(r["image_name"]))
    n_unavailable = n_rows - len(candidates)
    if sample is not None and sample > len(candidates):
        raise DataError(
            f"--sample {sample} is more than the {len(candidates)} images in the parts present "
            f"({len(parts)} part(s); {n_unavailable} metadata rows are in parts not downloaded)",
            path=str(src),
        )
    # Sorted candidates + seeded sample: the same seed picks the same images whatever the parquet order.
    chosen = candidates if sample is None else random.Random(opts.seed).sample(candidates, sample)

    from vlgen.progress import track

    items: Any = track(chosen, "copying images") if opts.progress else chosen
    records: list[Record] = []
    open_zips: dict[int, zipfile.ZipFile] = {}
    try:
        for row in items:
            name = row["image_name"]
            part = parts[row["part_id"]]
            item = f"{part.name}/{name}"
            prompt = row["prompt"]
            if not isinstance(prompt, str) or not prompt.strip():
                log.error(item, "empty prompt", path=str(meta_path))
                continue
            try:
                check_file_name(name)
                data = _read_image(part, name, row["part_id"], open_zips)
                load_image_bytes(data, item, max_pixels=opts.max_pixels)  # decode: these are small PNG/WebP
            except (DataError, ImageLoadError) as e:
                log.error(item, e.reason)
                continue
            dst = out / name
            atomic_write_bytes(dst, data)
            extra = {"prompt": prompt, "part_id": int(row["part_id"])}
            extra.update({c: _clean(row[c]) for c in EXTRA_COLUMNS if c in row})
            records.append(Record(file_name=name, captions=[prompt.strip()], path=dst, extra=extra))
    finally:
        for z in open_zips.values():
            z.close()

    info = {"sample": sample, "metadata_rows": n_rows, "rows_in_parts_not_present": n_unavailable}
    info["parts_present"] = sorted(parts)
    return finish_import(out, records, log, opts, importer="diffusiondb", source={"src": str(src.resolve())}, info=info)


def _read_image(part: Path, name: str, part_id: int, open_zips: dict[int, zipfile.ZipFile]) -> bytes:
    if part.is_dir():
        path = part / name
        if not path.is_file():
            raise DataError(f"image file missing from {part.name}/", path=str(path))
        return path.read_bytes()
    if part_id not in open_zips:
        try:
            open_zips[part_id] = zipfile.ZipFile(part)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"not a readable zip ({e})", path=str(part)) from None
    try:
        return open_zips[part_id].read(name)
    except KeyError:
        raise DataError(f"{name} is not in the zip", path=str(part)) from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC errors, truncated members
        raise DataError(f"cannot read {name} from the zip ({e})", path=str(part)) from None
