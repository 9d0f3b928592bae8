"""What every importer shares: the --on-error policy, the skip report, splits, and the final write.

Two kinds of left-out items, both always written to `OUT/skipped.jsonl` and counted in `import.json`:
* errors (missing/corrupt image, malformed line): raise with `on_error="fail"`, recorded with "skip";
* exclusions by design (Flickr8k images in no official split, its caption id with no image): never an
  error, always reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlgen.data.images import DEFAULT_MAX_PIXELS, probe_image
from vlgen.data.records import METADATA_NAME, Record, write_dataset
from vlgen.data.splits import DEFAULT_RATIOS, DEFAULT_SEED, count_splits, split_records
from vlgen.errors import ConfigError, DataError, ImageLoadError
from vlgen.fileio import check_output_dir, write_json, write_jsonl

OnError = Literal["fail", "skip"]
SKIPPED_NAME = "skipped.jsonl"
IMPORT_INFO_NAME = "import.json"


@dataclass
class ImportOptions:
    """Options shared by all importers (the CLI maps its flags onto this)."""

    on_error: OnError = "fail"
    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = DEFAULT_SEED
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    progress: bool = True


@dataclass
class ImportResult:
    """What an import did; also saved (with source and options) as `OUT/import.json`."""

    out_dir: Path
    n_images: int
    n_captions: int
    split_sizes: dict[str, int]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)


class ImportLog:
    """Collects left-out items; in "fail" mode an error raises at once instead."""

    def __init__(self, on_error: OnError) -> None:
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"--on-error {on_error!r}: expected 'fail' or 'skip'")
        self.on_error = on_error
        self.skipped: list[dict[str, Any]] = []
        self.excluded: list[dict[str, Any]] = []

    def error(self, item: str, reason: str, *, path: str | None = None, line: int | None = None) -> None:
        if self.on_error == "fail":
            hint = " (use --on-error skip to leave such items out with a report)"
            raise DataError(f"{item}: {reason}{hint}", path=path, line=line)
        where = {"path": path, "line": line} if path else {}
        self.skipped.append({"item": item, "reason": reason, "kind": "error", **where})

    def exclude(self, item: str, reason: str) -> None:
        self.excluded.append({"item": item, "reason": reason, "kind": "excluded"})


def prepare_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to mix a new import into an existing dataset unless asked to (checked before any work)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError("output path exists and is not a folder", path=str(out))
    check_output_dir(out, "OUT")  # a read-only folder or a file in the way: one line before any work
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError("output folder is not empty (pass --overwrite to write into it)", path=str(out))
    return out


def check_images(records: list[Record], log: ImportLog, max_pixels: int, progress: bool) -> list[Record]:
    """Header-check every source image (fast: no decode); bad ones go through the on-error policy."""
    items: Any = records
    if progress:
        from vlgen.progress import track

        items = track(records, "checking images")
    kept = []
    for r in items:
        try:
            probe_image(r.path, max_pixels=max_pixels)  # type: ignore[arg-type]
        except ImageLoadError as e:
            log.error(r.file_name, e.reason, path=str(r.path))
            continue
        kept.append(r)
    return kept


def finish_import(
    out_dir: Path,
    records: list[Record],
    log: ImportLog,
    opts: ImportOptions,
    *,
    importer: str,
    source: dict[str, Any],
    info: dict[str, Any] | None = None,
) -> ImportResult:
    """Assign missing splits (by image, seeded), write images + metadata + reports, return the summary."""
    if not records:
        raise DataError(f"nothing to import from {importer}: no usable images with captions were found")
    records = sorted(records, key=lambda r: r.file_name)  # output order independent of listing order
    had_splits = all(r.split is not None for r in records)
    split_records(records, opts.split_ratios, opts.seed)
    write_dataset(out_dir, records, progress=opts.progress)
    left_out = log.skipped + log.excluded
    if left_out:
        write_jsonl(out_dir / SKIPPED_NAME, left_out)
    elif (out_dir / SKIPPED_NAME).exists():  # a stale report from an earlier --overwrite run would mislead
        (out_dir / SKIPPED_NAME).unlink()
    sizes = {k: v for k, v in count_splits(records).items() if k != "none"}
    n_captions = sum(len(r.captions) for r in records)
    write_json(
        out_dir / IMPORT_INFO_NAME,
        {
            "importer": importer,
            "source": source,
            "metadata": METADATA_NAME,
            "images": len(records),
            "captions": n_captions,
            "split_sizes": sizes,
            "splits_from": "source" if had_splits else "seeded",
            "split_ratios": None if had_splits else list(opts.split_ratios),
            "seed": opts.seed,
            "on_error": opts.on_error,
            "skipped_errors": len(log.skipped),
            "excluded": len(log.excluded),
            **(info or {}),
        },
    )
    return ImportResult(out_dir, len(records), n_captions, sizes, list(log.skipped), list(log.excluded))
