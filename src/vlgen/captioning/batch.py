"""Batch captioning behind `vlgen caption`: collect inputs, caption in batches, append, resume.

Output is JSONL, one `{"file_name", "caption"}` per image (plus `"truncated": true` where a vision-language
captioner's caption hit max_new_tokens), appended (and fsync'd) batch by batch. Rerun on
the same output file, images already there are skipped, so a run killed half-way and rerun yields every
image exactly once. A bad image fails the run naming the file once every image before it is captioned (so a
rerun after fixing it loses nothing), or with `on_error="skip"` is listed in `OUT.skipped.jsonl` and counted -
the rest of its batch is still captioned.

`file_name` is the dataset-relative name for a dataset folder (so `vlgen evaluate captions --data` can
join predictions to references), the folder-relative name for a plain folder, the path as given for
a single file, and the sample key for WebDataset shards and parquet (vlgen.data.shards).

Several processes (`torchrun`/`accelerate launch`, see `caption_images`): process r of n takes items r, r+n,
r+2n ... of the full list and appends to its own journal `OUT_STEM.rank{r}-of-{n}.jsonl` beside the output
(never two processes appending to one file); after a barrier, process 0 merges the output's rows and every
journal into the output (one atomic rewrite, in the list's order) and removes the journals. Rows in the
output and in journals left by a killed run - of any process count - count as done on a rerun.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlgen.captioning.base import Captioner
from vlgen.captioning.inputs import decoded_batches, default_num_workers
from vlgen.data import IMAGE_EXTENSIONS, METADATA_NAME, load_records
from vlgen.data.records import check_inside
from vlgen.data.shards import ShardSample, collect_samples, find_source, split_files
from vlgen.errors import DataError, ImageLoadError, VlgenError
from vlgen.fileio import JsonlAppender, atomic_file, parse_json_object, read_jsonl_objects_lenient, write_jsonl
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
    truncated: int = 0  # captions of this run cut at max_new_tokens
    skipped: list[dict] = field(default_factory=list)
    out: Path | None = None
    skipped_file: Path | None = None  # where the skipped images are listed, when they were
    out_rows: int | None = None  # rows in `out` after process 0 merged the journals into it


def collect_inputs(
    inputs: Sequence[str | Path], split: str | None = None, image_column: str | None = None
) -> list[tuple[str, Path | ShardSample]]:
    """(file_name, path) for image files, image folders (recursively, sorted) and dataset folders;
    (key, sample) for WebDataset shards and parquet (vlgen.data.shards; `image_column` picks the image)."""
    items: list[tuple[str, Path | ShardSample]] = []
    # Consecutive shard (or parquet) inputs are listed as one source: `a.tar b.tar` (a shell's glob) is
    # 'DIR/*.tar' - one duplicate-key check, parquet row numbers counted across the files.
    run: list = []  # [kind, files, first input]

    def flush() -> None:
        if run:
            samples = collect_samples(run[0], run[1], label=run[2], image_column=image_column)
            items.extend((s.key, s.ref) for s in samples)
            run.clear()

    for raw in inputs:
        p = Path(raw)
        found = find_source(raw)  # None: not shards or parquet
        if found is not None:
            kind, files = found
            files = split_files(kind, files, split, raw) if split is not None else files
            if run and run[0] != kind:
                flush()
            if run:
                run[1].extend(files)
            else:
                run.extend([kind, list(files), str(raw)])
            continue
        flush()
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
    flush()
    seen: dict[str, Path | ShardSample] = {}
    for name, path in items:
        if name in seen and seen[name] != path:
            raise DataError(f"two inputs share the file_name {name!r} ({seen[name]} and {path}); caption them apart")
        seen[name] = path
    return list(dict(items).items())  # de-duplicated, first-seen order


def _caption_row(raw: bytes) -> dict | None:
    """A line `vlgen caption` wrote as its row ({"file_name": str, "caption": str, ...}), else None."""
    row = parse_json_object(raw)
    if row is not None and isinstance(row.get("file_name"), str) and isinstance(row.get("caption"), str):
        return row
    return None


def iter_caption_rows(out: Path, journal: bool = False) -> Iterator[dict]:
    """The caption rows of an existing output (or journal), streamed line by line (each parsed once), read
    before anything is written to it. What is accepted and refused: see `read_caption_rows`."""
    for row, _, _ in _iter_caption_lines(out, journal):
        yield row


def _iter_caption_lines(out: Path, journal: bool = False) -> Iterator[tuple[dict, int, int]]:
    """(row, byte offset, byte length) of every caption row of `out` (see `iter_caption_rows`)."""
    if not out.exists():
        return
    if out.is_dir():
        raise DataError("--out is a folder; give a file path such as OUT/captions.jsonl", path=str(out))
    if not out.is_file():
        return
    valid, offset = 0, 0
    with open(out, "rb") as f:
        for i, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            row = _caption_row(raw)
            if row is not None:
                valid += 1
                yield row, start, len(raw)
                continue
            if not raw.endswith(b"\n") and (valid or journal):  # the unterminated last line, after valid rows
                continue
            raise DataError(
                'is not a vlgen caption file (this line is not a {"file_name", "caption"} row); the file was '
                "left untouched: choose another --out, or remove the file to start afresh",
                path=str(out),
                line=i,
            )


def read_caption_rows(out: Path, journal: bool = False) -> list[dict]:
    """The caption rows of an existing output (or journal), read before anything is written to it.

    Every line must be a caption row; the one exception is an unterminated, unparsable last line after
    valid rows (what a kill mid-write leaves; `JsonlAppender` drops it). A complete last row without its
    newline counts as done (the appender adds the newline). Anything else - another program's file, a
    JSONL of other rows - is refused with DataError, and the file is left untouched.
    Only regular files are read: `/dev/stdout`, pipes and other devices have nothing to resume.
    A journal (`journal=True`) may also be one cut-off line alone: its process was killed in its first write.
    """
    return list(iter_caption_rows(out, journal))


def done_file_names(out: Path, journal: bool = False) -> set[str]:
    """file_names already captioned in an existing output (see `read_caption_rows` for what is accepted).

    Streamed, keeping only the names: resuming from a 1M-line output costs its names (~100 MB), not its rows."""
    return {row["file_name"] for row in iter_caption_rows(out, journal)}


def journal_path(out: Path, process_index: int, num_processes: int) -> Path:
    """Where process `process_index` of `num_processes` appends its rows: `OUT_STEM.rank{r}-of-{n}.jsonl`."""
    return out.with_name(f"{out.stem}.rank{process_index}-of-{num_processes}.jsonl")


def find_journals(out: Path) -> list[Path]:
    """Journals beside `out` from runs of any process count (a killed run leaves them), sorted by (n, r)."""
    pattern = re.compile(re.escape(out.stem) + r"\.rank(\d+)-of-(\d+)\.jsonl")
    found = []
    if out.parent.is_dir():
        for p in out.parent.glob(f"{_glob_escape(out.stem)}.rank*-of-*.jsonl"):
            m = pattern.fullmatch(p.name)
            if m and p.is_file():
                found.append(((int(m.group(2)), int(m.group(1))), p))
    return [p for _, p in sorted(found)]


def _glob_escape(text: str) -> str:
    """`text` as a literal in a glob pattern (`glob.escape` also escapes drive letters, which we don't need)."""
    return re.sub(r"([*?[])", r"[\1]", text)


def merge_journals(out: Path, items: Sequence[tuple[str, Path | ShardSample]]) -> int:
    """Fold every journal beside `out` (and its skip list) into `out` and `OUT.skipped.jsonl`; remove them.

    One atomic rewrite of `out` (a kill leaves the old output and the journals, which the next run merges):
    rows already in `out` for names not in `items` first, in their order, then the rows of `items` in the
    list's order; each file_name once (the output's row wins, then the lowest process count and rank).
    Returns the number of rows in `out` afterwards.
    """
    journals = find_journals(out)
    skip_journals = [j.with_suffix(".skipped.jsonl") for j in journals]
    skip_journals = [p for p in skip_journals if p.is_file()]
    if not journals and not skip_journals:
        return sum(1 for _ in iter_caption_rows(out))
    # Where each name's row is (file, byte offset, length), not the rows: merging a 1M-row output holds its
    # names, and the rows are copied byte for byte from their files into the new output.
    paths = [out, *journals]
    where: dict[str, tuple[int, int, int]] = {}
    for k, path in enumerate(paths):
        for row, start, length in _iter_caption_lines(path, journal=path != out):
            where.setdefault(row["file_name"], (k, start, length))
    listed = [name for name, _ in items if name in where]
    listed_set = set(listed)
    order = [name for name in where if name not in listed_set] + listed
    handles = [open(p, "rb") if p.is_file() else None for p in paths]  # noqa: SIM115 - closed below
    try:
        with atomic_file(out) as tmp, open(tmp, "wb") as dst:
            for name in order:
                k, start, length = where[name]
                src = handles[k]
                src.seek(start)
                raw = src.read(length)
                dst.write(raw if raw.endswith(b"\n") else raw + b"\n")  # a complete last row without its newline
    finally:
        for h in handles:
            if h is not None:
                h.close()
    if skip_journals:
        skip_out = out.with_suffix(".skipped.jsonl")
        # a skip-list line a kill cut off is left out
        skipped = [r for p in [skip_out, *skip_journals] if p.is_file() for r in read_jsonl_objects_lenient(p)]
        write_jsonl(skip_out, skipped)
    for p in [*journals, *skip_journals]:  # only after the merged copy is in place
        p.unlink(missing_ok=True)
    return len(order)


def torch_device_type(captioner: Captioner) -> str | None:
    """The captioner's device type ("cpu", "cuda", ...), None when it has no parameters to tell."""
    try:
        return captioner.device.type
    except (AttributeError, StopIteration):
        return None


def caption_batch(
    captioner: Captioner, images: Sequence, num_beams: int = 1, max_new_tokens: int = 30, prompt: str | None = None
) -> list[dict]:
    """`{"caption"[, "truncated"]}` per image from the captioner's `caption_rows` (or, for an object with only
    `generate`, its captions); `prompt` goes to the captioner only when given (vision-language families)."""
    kw = {} if prompt is None else {"prompt": prompt}
    rows = getattr(captioner, "caption_rows", None)
    if rows is not None:
        return rows(images, num_beams=num_beams, max_new_tokens=max_new_tokens, **kw)
    captions = captioner.generate(images, num_beams=num_beams, max_new_tokens=max_new_tokens, **kw)
    return [{"caption": c} for c in captions]


def caption_images(
    captioner: Captioner,
    items: Sequence[tuple[str, Path | ShardSample]],
    out: Path | None,
    batch_size: int | None = None,
    num_beams: int = 1,
    max_new_tokens: int = 30,
    on_error: str = "fail",
    prompt: str | None = None,
    num_workers: int | None = None,
    process_index: int = 0,
    num_processes: int = 1,
    echo=None,
    barrier: Callable[[], None] | None = None,
    after_batch: Callable[[], None] | None = None,
    test_kill_after_rows: int | None = None,
    done: set[str] | None = None,
) -> CaptionSummary:
    """Caption `items` into `out` (JSONL) or, with out=None, hand each row to `echo`.

    `done`: the file names `out` already holds, when the caller has read them (`done_file_names(out)`), so a
    resumed run over a large output reads it once.

    With `num_processes` > 1 every process calls this with the same `items` and `out`, and `barrier` (e.g.
    accelerate's `PartialState().wait_for_everyone`) must block until all have reached it: this process
    captions items[process_index::num_processes] into its journal (see the module docstring), and process
    0 merges the journals into `out` once all are done (`summary.out_rows`). `out=None` (streaming) needs
    one process. With one process, journals a killed multi-process run left are honoured and merged too.
    `after_batch` is called once each batch's rows are written (autocaption saves its metadata.jsonl there).
    `prompt`: the vision-language captioner's prompt for this run (None: the one it was loaded with).
    `num_workers`: processes decoding and preprocessing the next batches while the model runs this one
    (`vlgen.captioning.inputs`; 0: in this thread, between batches; None: `default_num_workers()`).

    `test_kill_after_rows` (tests only): after writing that many rows, this process writes half a row and
    SIGKILLs itself - what a kill mid-write leaves, at a deterministic point.
    """
    if on_error not in ("fail", "skip"):
        raise VlgenError(f"--on-error must be fail or skip, got {on_error!r}")
    batch_size = resolve_batch_size(batch_size, num_beams)
    if num_processes > 1 and (out is None or (out.exists() and not out.is_file())):
        raise VlgenError(
            f"--out {out or '-'}: {num_processes} processes need a regular output file to merge their rows "
            "into; give a file path (streaming to stdout works with one process)"
        )
    if num_processes > 1 and barrier is None:
        raise VlgenError("caption_images: several processes need a barrier (e.g. PartialState().wait_for_everyone)")
    summary = CaptionSummary(out=out)
    # Checks every file before anything is written to it; leftover journals of any process count count too.
    done = set(done) if done is not None else (done_file_names(out) if out else set())
    journals = find_journals(out) if out is not None and (out.is_file() or not out.exists()) else []
    for j in journals:
        done |= done_file_names(j, journal=True)
    target = journal_path(out, process_index, num_processes) if num_processes > 1 else out
    # The skip list sits beside a regular output file; with a device (/dev/null) it goes to the summary only.
    skip_path = (
        target.with_suffix(".skipped.jsonl")
        if target is not None and (target.is_file() or not target.exists())
        else None
    )
    mine = list(items)[process_index::num_processes]  # distributed: each process takes every N-th image
    todo = [it for it in mine if it[0] not in done]
    summary.already_done = len(mine) - len(todo)
    if num_processes > 1:
        barrier()  # every process has read the journals before any process appends to its own
    writer = JsonlAppender(target) if target else None
    skip_writer = None
    try:
        with make_progress() as progress:
            task = progress.add_task("captioning", total=len(todo))
            decoded = decoded_batches(
                [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)],
                input_size=getattr(captioner, "input_size", None),
                transform=captioner.image_transform() if hasattr(captioner, "image_transform") else None,
                on_error=on_error,
                num_workers=default_num_workers() if num_workers is None else num_workers,
                pin_memory=torch_device_type(captioner) == "cuda",
            )
            for batch in decoded:  # decoded ahead of the model, in worker processes with num_workers > 0
                good, images, bad = batch.file_names, batch.inputs, None
                for b in batch.bad:
                    if on_error == "fail":
                        bad = b  # the batch's last: the images before it are captioned first, then the run fails
                        break
                    entry = {"file_name": b.file_name, "reason": b.reason}
                    if isinstance(b.ref, ShardSample):  # a key names a sample only with its shard
                        entry["source"] = b.ref.source
                    summary.skipped.append(entry)
                    if skip_path is not None:
                        skip_writer = skip_writer or JsonlAppender(skip_path)
                        summary.skipped_file = skip_path
                        skip_writer.write({"file_name": b.file_name, "path": str(b.ref), "reason": b.reason})
                if images is not None:
                    results = caption_batch(captioner, images, num_beams, max_new_tokens, prompt)
                    for name, result in zip(good, results, strict=True):
                        row = {"file_name": name, **result}
                        summary.truncated += bool(result.get("truncated"))
                        writer.write(row, sync=False) if writer else echo(row)
                        summary.captioned += 1
                        if writer and summary.captioned == test_kill_after_rows:
                            _kill_mid_write(writer)
                    if writer:
                        writer.sync()  # one fsync per batch, not per row
                if after_batch is not None:
                    after_batch()
                if bad is not None:
                    raise ImageLoadError(
                        f"{bad.reason}; the images before it are captioned. Fix or remove it and rerun, or pass "
                        "--on-error skip to caption the rest and list it",
                        path=bad.path,
                        line=bad.line,
                    ) from None
                progress.advance(task, batch.size)
    finally:
        if writer:
            writer.close()
        if skip_writer:
            skip_writer.close()
    if num_processes > 1:
        barrier()  # every journal is complete
        if process_index == 0:
            summary.out_rows = merge_journals(out, items)
        if summary.skipped_file is not None:  # merged into the output's skip list
            summary.skipped_file = out.with_suffix(".skipped.jsonl")
        barrier()  # no process reports before the output is whole
    elif out is not None and journals:
        summary.out_rows = merge_journals(out, items)
    return summary


def write_caption_parquet(journal: Path, out: Path, rows_per_group: int = 65536) -> int:
    """Write the caption rows of `journal` (JSONL) to `out` as parquet (`file_name`, `caption`), atomically.

    Streamed: `rows_per_group` rows are in memory at a time. A cut-off last line (a killed write) is left
    out, as everywhere else. Returns the number of rows written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlgen.fileio import atomic_file

    schema = pa.schema([("file_name", pa.string()), ("caption", pa.string())])
    n = 0
    with atomic_file(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        names: list[str] = []
        captions: list[str] = []

        def flush() -> None:
            if names:
                writer.write_table(pa.table({"file_name": names, "caption": captions}, schema=schema))
                names.clear()
                captions.clear()

        if journal.is_file():
            with open(journal, "rb") as f:
                for raw in f:
                    row = _caption_row(raw)
                    if row is None:
                        continue
                    names.append(row["file_name"])
                    captions.append(row["caption"])
                    n += 1
                    if len(names) >= rows_per_group:
                        flush()
        flush()
    return n


def _kill_mid_write(writer: JsonlAppender) -> None:
    """Test hook (`test_kill_after_rows`): half a row on disk, then SIGKILL - no cleanup runs."""
    with open(writer.path, "a", encoding="utf-8") as f:
        f.write('{"file_name": "')
    os.kill(os.getpid(), signal.SIGKILL)
