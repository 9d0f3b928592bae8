"""Batch captioning behind `vlgen caption`: collect inputs, caption in batches, append, resume.

Output is JSONL, one `{"file_name", "caption"}` per image, appended (and fsync'd) batch by batch. Rerun on
the same output file, images already there are skipped, so a run killed half-way and rerun yields every
image exactly once. A bad image fails the run naming the file, or with `on_error="skip"` is listed in
`OUT.skipped.jsonl` and counted - the rest of its batch is still captioned.

`file_name` is the dataset-relative name for a dataset folder (so `vlgen evaluate captions --data` can
join predictions to references), the folder-relative name for a plain folder, and the path as given for
a single file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlgen.captioning.base import Captioner
from vlgen.data import IMAGE_EXTENSIONS, METADATA_NAME, load_image, load_records
from vlgen.data.records import check_inside
from vlgen.errors import DataError, ImageLoadError, VlgenError
from vlgen.fileio import JsonlAppender
from vlgen.progress import make_progress

# Decoding sequences per forward pass when --batch-size is not given: 32 images greedy, 8 with 4 beams.
# Per-token decoding cost is mostly fixed per step (weights streamed from memory, Python in `generate`), so
# wider steps amortise it; keeping sequences (not images) constant bounds the beam-expanded cross-attention
# cache (BLIP-base fp32: ~42 MB per sequence -> ~1.3 GB at 32).
DEFAULT_SEQUENCES_PER_BATCH = 32


def resolve_batch_size(batch_size: int | None, num_beams: int) -> int:
    """Images per forward pass: the user's `--batch-size`, or 32 // num_beams when none was given."""
    if batch_size is None:
        return max(1, DEFAULT_SEQUENCES_PER_BATCH // max(1, num_beams))
    if batch_size < 1:
        raise VlgenError(f"--batch-size must be at least 1, got {batch_size}")
    return batch_size


@dataclass
class CaptionSummary:
    captioned: int = 0
    already_done: int = 0
    skipped: list[dict] = field(default_factory=list)
    out: Path | None = None
    skipped_file: Path | None = None  # where the skipped images are listed, when they were


def collect_inputs(inputs: Sequence[str | Path], split: str | None = None) -> list[tuple[str, Path]]:
    """(file_name, path) for image files, image folders (recursively, sorted) and dataset folders."""
    items: list[tuple[str, Path]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir() and (p / METADATA_NAME).is_file():
            items += [(r.file_name, r.path) for r in load_records(p, split=split)]
        elif p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS and q.is_file())
            for q in found:  # a link out of the folder is refused, as in dataset folders
                check_inside(p, q)
            if not found:
                raise DataError("no image files in this folder", path=str(p))
            items += [(q.relative_to(p).as_posix(), q) for q in found]
        elif p.is_file():
            items.append((str(raw), p))
        else:
            raise DataError("no such file or folder", path=str(p))
    seen: dict[str, Path] = {}
    for name, path in items:
        if name in seen and seen[name] != path:
            raise DataError(f"two inputs share the file_name {name!r} ({seen[name]} and {path}); caption them apart")
        seen[name] = path
    return list(dict(items).items())  # de-duplicated, first-seen order


def _is_caption_row(raw: bytes) -> str | None:
    """The file_name of a line `vlgen caption` wrote ({"file_name": str, "caption": str, ...}), else None."""
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(row, dict) and isinstance(row.get("file_name"), str) and isinstance(row.get("caption"), str):
        return row["file_name"]
    return None


def done_file_names(out: Path) -> set[str]:
    """file_names already captioned in an existing output, read before anything is written to it.

    Every line must be a caption row; the one exception is an unterminated, unparsable last line after
    valid rows (what a kill mid-write leaves; `JsonlAppender` drops it). A complete last row without its
    newline counts as done (the appender adds the newline). Anything else - another program's file, a
    JSONL of other rows - is refused with DataError, and the file is left untouched.
    Only regular files are read: `/dev/stdout`, pipes and other devices have nothing to resume.
    """
    if not out.exists():
        return set()
    if out.is_dir():
        raise DataError("--out is a folder; give a file path such as OUT/captions.jsonl", path=str(out))
    if not out.is_file():
        return set()
    done: set[str] = set()
    raw_bytes = out.read_bytes()
    lines = raw_bytes.split(b"\n")
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        name = _is_caption_row(raw)
        if name is not None:
            done.add(name)
            continue
        if i == len(lines) and done:  # unterminated (no newline after it) and after valid rows
            continue
        raise DataError(
            'is not a vlgen caption file (this line is not a {"file_name", "caption"} row); the file was '
            "left untouched: choose another --out, or remove the file to start afresh",
            path=str(out),
            line=i,
        )
    return done


def caption_images(
    captioner: Captioner,
    items: Sequence[tuple[str, Path]],
    out: Path | None,
    batch_size: int | None = None,
    num_beams: int = 1,
    max_new_tokens: int = 30,
    on_error: str = "fail",
    process_index: int = 0,
    num_processes: int = 1,
    echo=None,
) -> CaptionSummary:
    """Caption `items` into `out` (JSONL) or, with out=None, hand each row to `echo`."""
    if on_error not in ("fail", "skip"):
        raise VlgenError(f"--on-error must be fail or skip, got {on_error!r}")
    batch_size = resolve_batch_size(batch_size, num_beams)
    summary = CaptionSummary(out=out)
    done = done_file_names(out) if out else set()  # checks the file before anything is written to it
    # The skip list sits beside a regular output file; with a device (/dev/null) it goes to the summary only.
    skip_path = out.with_suffix(".skipped.jsonl") if out is not None and (out.is_file() or not out.exists()) else None
    todo = [it for it in items if it[0] not in done]
    summary.already_done = len(items) - len(todo)
    todo = todo[process_index::num_processes]  # distributed: each process takes every N-th image
    writer = JsonlAppender(out) if out else None
    skip_writer = None
    try:
        with make_progress() as progress:
            task = progress.add_task("captioning", total=len(todo))
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                good, images = [], []
                for name, path in batch:
                    try:
                        # The server decodes through the same call: one image, one caption from both.
                        images.append(load_image(path, input_size=getattr(captioner, "input_size", None)))
                        good.append(name)
                    except ImageLoadError as e:
                        if on_error == "fail":
                            raise
                        summary.skipped.append({"file_name": name, "reason": e.reason})
                        if skip_path is not None:
                            skip_writer = skip_writer or JsonlAppender(skip_path)
                            summary.skipped_file = skip_path
                            skip_writer.write({"file_name": name, "path": str(path), "reason": e.reason})
                if images:
                    captions = captioner.generate(images, num_beams=num_beams, max_new_tokens=max_new_tokens)
                    for name, caption in zip(good, captions, strict=True):
                        row = {"file_name": name, "caption": caption}
                        writer.write(row) if writer else echo(row)
                    summary.captioned += len(images)
                progress.advance(task, len(batch))
    finally:
        if writer:
            writer.close()
        if skip_writer:
            skip_writer.close()
    return summary
