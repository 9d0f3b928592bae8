"""`vlgen autocaption DIR`: caption a folder of training images for DreamBooth with any vlgen captioner.

The write-up's step "we employed BLIP to generate a caption for each image" - each caption goes into a
prompt template with the trigger ("a 3D icon in the style of TOK, {caption}") and into the folder's
`metadata.jsonl` (imagefolder), the column `vlgen train lora --caption-column` reads.

- Resumable: metadata.jsonl is rewritten (atomically) after every batch, so a killed run keeps what it
  wrote; rows already captioned are kept unless --overwrite. Rows remember which model and template made
  them (`caption_model`, `caption_template`), so an interrupted --overwrite run, rerun, does not redo them.
- Captioning is `vlgen caption`'s (`vlgen.captioning.batch.caption_images`), bad images included: an image
  that fails to load stops the run in one line naming it, once every image before it is captioned and
  written - unless --on-error skip, which reports it and goes on.
The captioner is reached only through captioning's public API (`registry`, `batch`): t2i and captioning
stay independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlgen.data import IMAGE_EXTENSIONS, METADATA_NAME, check_file_name
from vlgen.data.records import check_inside
from vlgen.errors import ConfigError, DataError
from vlgen.fileio import check_output_file, read_jsonl_objects, write_jsonl

PLACEHOLDER = "{caption}"


@dataclass
class AutocaptionResult:
    captioned: list[str] = field(default_factory=list)  # file_names captioned by this run
    kept: list[str] = field(default_factory=list)  # rows left as they were
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file_name, reason)
    truncated: list[str] = field(default_factory=list)  # captioned by this run, cut at max_new_tokens
    metadata: Path | None = None


def apply_template(template: str, caption: str) -> str:
    """Plain substitution (not str.format), so other braces in a template are kept as typed."""
    return template.replace(PLACEHOLDER, caption.strip())


def check_template(template: str) -> None:
    if PLACEHOLDER not in template:
        raise ConfigError(
            f"--template {template!r} must contain {PLACEHOLDER} where the caption goes, "
            f"e.g. 'a 3D icon in the style of TOK, {PLACEHOLDER}'"
        )


def find_images(root: Path) -> list[str]:
    """Image files under `root` (recursively, hidden entries skipped) as posix paths relative to it."""
    names = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(s.startswith(".") for s in rel.parts):
            check_inside(root, p)  # a link out of the folder is refused, as train lora's dataset loader does
            names.append(rel.as_posix())
    return sorted(names)


def read_rows(meta: Path) -> list[dict]:
    """Existing metadata rows as they are (all columns kept); a malformed line is an error naming it."""
    if not meta.is_file():
        return []
    rows = []
    for i, row in read_jsonl_objects(meta):
        if not isinstance(row.get("file_name"), str):
            raise DataError("each row needs a string 'file_name'", path=str(meta), line=i)
        try:
            check_file_name(row["file_name"])  # NUL, control characters, '..', absolute paths
        except DataError as e:
            raise DataError(e.reason, path=str(meta), line=i) from None
        rows.append(row)
    return rows


def autocaption(
    folder: str | Path,
    *,
    model: str = "blip",
    template: str = PLACEHOLDER,
    caption_column: str = "text",
    overwrite: bool = False,
    on_error: Literal["fail", "skip"] = "fail",
    batch_size: int | None = None,  # None: as `vlgen caption`, 32 // num_beams images
    num_beams: int = 3,
    max_new_tokens: int = 30,
    device: str = "cpu",
    out: str | Path | None = None,
    image_column: str | None = None,
    caption_prompt: str | None = None,
    dtype: str | None = None,
    tags_with: str | None = None,
    general_threshold: float | None = None,
    character_threshold: float | None = None,
) -> AutocaptionResult:
    """Caption every image of `folder` into its metadata.jsonl (or `out`); see the module docstring.

    `folder` may also be WebDataset shards or parquet (vlgen.data.shards; `image_column` picks the image):
    rows are then named by sample key and written to `out`, which is required (there is no folder to write
    into). `caption_prompt` (vision-language captioners: the instruction or Florence-2 task token) and `dtype`
    (fp32/bf16/fp16) are as `vlgen caption`'s; a caption cut at `max_new_tokens` gets `"truncated": true`.
    `tags_with` (a WD tagger) follows each caption with its tags, "CAPTION, TAGS", and is recorded as
    `tags_model`; `general_threshold`/`character_threshold` are the WD tagger's (see vlgen.captioning.wd_tagger)."""
    check_template(template)
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"--on-error must be 'fail' or 'skip', got {on_error!r}")
    from vlgen.captioning.batch import caption_images, resolve_batch_size
    from vlgen.data.shards import find_source, list_samples

    batch_size = resolve_batch_size(batch_size, num_beams)
    root = Path(folder)
    if find_source(folder) is not None:
        if out is None:
            raise ConfigError(
                f"{folder}: shards and parquet have no folder to write metadata.jsonl into; give --out METADATA.jsonl"
            )
        refs = {s.key: s.ref for s in list_samples(folder, image_column=image_column)}
        names = list(refs)
    else:
        if not root.is_dir():
            raise ConfigError(f"{root}: no such directory")
        names = find_images(root)
        if not names:
            raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder", path=str(root))
        refs = {n: root / n for n in names}
    meta = Path(out) if out is not None else root / METADATA_NAME
    # written after every batch: writable before the model loads
    check_output_file(meta, "--out" if out is not None else "FOLDER's metadata.jsonl")
    rows = read_rows(meta)
    by_name = {r["file_name"]: r for r in rows}
    original = set(by_name)
    for n in names:  # new images get a row at the end, in sorted order
        if n not in by_name:
            by_name[n] = {"file_name": n}
            rows.append(by_name[n])

    def done(row: dict) -> bool:
        if not row.get(caption_column):
            return False
        if not overwrite:
            return True
        same = row.get("caption_model") == model and row.get("caption_template") == template
        return same and row.get("caption_prompt") == caption_prompt and row.get("tags_model") == tags_with

    result = AutocaptionResult(metadata=meta)
    todo = [n for n in names if not done(by_name[n])]
    result.kept = [r["file_name"] for r in rows if r["file_name"] not in set(todo)]

    def save() -> None:  # after every batch, so a killed run keeps what it captioned
        write_jsonl(meta, _rows_to_write(rows, original, caption_column))

    def take(row: dict) -> None:  # one {"file_name", "caption"} row from caption_images
        n, c = row["file_name"], row["caption"]
        by_name[n].update({caption_column: apply_template(template, c), "raw_caption": c,
                           "caption_model": model, "caption_template": template})  # fmt: skip
        for key, value in (("caption_prompt", caption_prompt), ("truncated", row.get("truncated")),
                           ("tags_model", tags_with)):  # fmt: skip
            if value is None:
                by_name[n].pop(key, None)  # a stale value from an earlier run would describe another caption
            else:
                by_name[n][key] = value
        if row.get("truncated"):
            result.truncated.append(n)
        result.captioned.append(n)

    try:
        if todo:
            from vlgen.captioning.registry import load_captioner_with_tags

            captioner = load_captioner_with_tags(
                model, device=device, dtype=dtype, prompt=caption_prompt, tags_with=tags_with,
                general_threshold=general_threshold, character_threshold=character_threshold,
            )  # fmt: skip
            summary = caption_images(
                captioner, [(n, refs[n]) for n in todo], None, batch_size=batch_size, num_beams=num_beams,
                max_new_tokens=max_new_tokens, on_error=on_error, echo=take, after_batch=save,
            )  # fmt: skip
            # a shard's key is named with its shard
            result.failed = [(s["file_name"] + (f" in {s['source']}" if "source" in s else ""), s["reason"])
                             for s in summary.skipped]  # fmt: skip
    except BaseException:
        if result.captioned:  # a bad image (--on-error fail) or Ctrl-C: keep the images captioned before it
            save()
        raise
    save()
    return result


def _rows_to_write(rows: list[dict], original: set[str], caption_column: str) -> list[dict]:
    """Rows that were in the file before, plus new images once captioned (an uncaptioned new image,
    e.g. an unreadable one, gets no row: it would break training; it is reported instead)."""
    return [r for r in rows if r["file_name"] in original or r.get(caption_column)]
