"""`vlgen data validate`: list every problem of an imagefolder dataset instead of stopping at the first.

Each problem is located `file:line: reason` (line of metadata.jsonl; the image is named in the reason), so
editors and CI logs can jump to it. Every image is fully decoded with the same loader training uses.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vlgen.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, load_image
from vlgen.data.records import DEFAULT_CAPTION_COLUMN, METADATA_NAME, iter_metadata_lines, parse_row
from vlgen.errors import DataError, ImageLoadError
from vlgen.fileio import parse_json_object, read_jsonl_objects_lenient


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line is not None else f"{self.path}: {self.reason}"


@dataclass
class ValidationReport:
    dataset_dir: Path
    n_rows: int = 0
    n_ok: int = 0
    split_counts: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.split_counts.items())) or "no splits"
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{self.dataset_dir}: {self.n_rows} rows, {self.n_ok} valid ({splits}); {verdict}"


def _file_name_of(raw: bytes) -> str | None:
    row = parse_json_object(raw)
    name = row.get("file_name") if row is not None else None
    return PurePosixPath(name).as_posix() if isinstance(name, str) else None


def _missing_caption_column(lines: list[tuple[int, bytes]], caption_column: str) -> str | None:
    """The one problem to report when no row has `caption_column` (the option names the wrong column)."""
    rows = read_jsonl_objects_lenient(raw for _, raw in lines)
    if not rows or any(caption_column in row for row in rows):
        return None
    columns = sorted({k for row in rows for k in row})
    return (
        f"no row has the caption column {caption_column!r} (columns: {', '.join(columns)}); "
        "pass --caption-column with the column that holds the captions"
    )


def validate_dataset(
    dataset_dir: str | os.PathLike,
    caption_column: str = DEFAULT_CAPTION_COLUMN,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_unlisted: bool = True,
    progress: bool = False,
) -> ValidationReport:
    """Check every row and every image of `DIR/metadata.jsonl`; never raises for dataset problems."""
    root = Path(dataset_dir)
    report = ValidationReport(root)
    meta = str(root / METADATA_NAME)
    try:
        lines = list(iter_metadata_lines(root))
    except DataError as e:
        report.problems.append(Problem(e.path or str(root), None, e.reason))
        return report

    def problem(line: int, reason: str) -> None:
        report.problems.append(Problem(meta, line, reason))

    items = lines
    if progress:
        from vlgen.progress import track

        items = track(lines, "validating")  # type: ignore[assignment]
    missing = _missing_caption_column(lines, caption_column)
    if missing is not None:  # a wrong --caption-column: one line, not one per row
        report.n_rows = len(lines)
        report.problems.append(Problem(meta, None, missing))
        return report
    first_line: dict[str, int] = {}
    listed: set[str] = set()
    for line_no, raw in items:
        report.n_rows += 1
        try:
            rec = parse_row(root, raw, caption_column)
        except DataError as e:
            problem(line_no, e.reason)
            name = _file_name_of(raw)
            if name is not None:  # the image has a row (a bad one, reported above): it is not "unlisted"
                listed.add(name)
            continue
        if rec.file_name in first_line:
            problem(line_no, f"duplicate file_name {rec.file_name!r} (first on line {first_line[rec.file_name]})")
            continue
        first_line[rec.file_name] = line_no
        listed.add(Path(rec.file_name).as_posix())
        try:
            load_image(rec.path, max_pixels=max_pixels)  # type: ignore[arg-type]
        except ImageLoadError as e:
            problem(line_no, f"image {rec.file_name!r}: {e.reason}")
            continue
        report.n_ok += 1
        report.split_counts[rec.split or "none"] += 1

    if check_unlisted:
        # An image without a metadata row is invisible to vlgen but still picked up by imagefolder.
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith("."):
                rel = p.relative_to(root).as_posix()
                if rel not in listed and rel not in first_line:
                    report.problems.append(Problem(str(p), None, f"image not listed in {METADATA_NAME}"))
    return report
