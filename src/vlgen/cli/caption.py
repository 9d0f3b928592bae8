"""`vlgen caption INPUT... --model M`: caption images in batches (thin wrapper over vlgen.captioning.batch).

Several processes: `torchrun --nproc_per_node N -m vlgen caption ...` (CPU: gloo) or `accelerate launch -m
vlgen caption ...` (GPUs); see vlgen.captioning.batch for the per-process journals and the merge.

Test hook: `VLGEN_TEST_CAPTION_KILL_AFTER_ROWS=K` makes each process SIGKILL itself after writing K rows
(half a row left on disk), so tests can kill a multi-process run at a deterministic point. Not for users.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from vlgen.captioning.vlm_config import DEFAULT_INSTRUCTION
from vlgen.cli._console import err
from vlgen.cli._tagger_options import CHARACTER_THRESHOLD, GENERAL_THRESHOLD, TAGS_WITH

# `--out` values that mean "stream the rows to stdout" (reading them back to resume would block on a pipe).
STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _write_row(row: dict) -> None:
    """One JSON line to stdout as is (not through rich: no markup, emoji codes or wrapping in the data)."""
    sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    sys.stdout.flush()  # a reader downstream (`| jq`) sees each row as it is captioned


CAPTION_PROMPT = typer.Option(
    None,
    "--caption-prompt",
    help="Vision-language models: the instruction, or Florence-2's task token (<CAPTION>, <DETAILED_CAPTION>, "
    "<MORE_DETAILED_CAPTION>). Default per model: Florence-2 <CAPTION>, BLIP-2 none, chat models "
    f"{DEFAULT_INSTRUCTION!r}.",
    show_default=False,
)
DTYPE = typer.Option(
    None, "--dtype", help="fp32, bf16 or fp16 (bf16/fp16 on GPUs for 2-8B models; default fp32).", show_default=False
)


def caption(
    inputs: list[Path] = typer.Argument(
        ...,
        help="Image files, image folders, dataset folders, WebDataset shards (DIR/*.tar, "
        "'shards/{00000..00099}.tar') or parquet files/folders.",
    ),
    model: str = typer.Option(
        "blip",
        "--model",
        help="blip, vit-gpt2, florence-2 (florence-community/Florence-2-base), a hub id, or a model directory; "
        "vision-language models too (Florence-2, Qwen2-VL, SmolVLM, BLIP-2, LLaVA: any transformers "
        "image-text-to-text checkpoint).",
    ),
    out_file: Path | None = typer.Option(
        None,
        "--out",
        help="JSONL output (appended; rerun resumes); '-' or /dev/stdout streams to stdout. OUT.parquet: the "
        "journal is OUT.jsonl and OUT.parquet is written from it at the end.",
    ),
    num_beams: int = typer.Option(4, help="Beam width (1 = greedy)."),
    batch_size: int | None = typer.Option(
        None, help="Images per forward pass (default: 32 decoding sequences, i.e. 32 // num_beams images)."
    ),
    max_new_tokens: int = typer.Option(30, help="Longest caption, in tokens; a caption cut there says truncated."),
    caption_prompt: str | None = CAPTION_PROMPT,
    dtype: str | None = DTYPE,
    tags_with: str | None = TAGS_WITH,
    general_threshold: float | None = GENERAL_THRESHOLD,
    character_threshold: float | None = CHARACTER_THRESHOLD,
    split: str | None = typer.Option(None, help="Only this split of a dataset folder (train/validation/test)."),
    on_error: str = typer.Option("fail", help="fail: stop at a bad image; skip: report it and go on."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
    num_workers: int | None = typer.Option(
        None,
        "--num-workers",
        min=0,
        help="Processes decoding and preprocessing the next batches while the model runs (0: between batches, "
        "in this process). Default: half the CPUs, at most 8.",
        show_default=False,
    ),
    image_column: str | None = typer.Option(
        None,
        "--image-column",
        help="Parquet: the image column (default: image, jpg, png, ...); shards: the image extension (default: "
        "jpg, jpeg, png, ...).",
    ),
) -> None:
    """Caption images; one JSON line per image (`file_name`, `caption`)."""
    import torch
    from accelerate import PartialState

    from vlgen.captioning.batch import caption_images, collect_inputs, done_file_names, write_caption_parquet
    from vlgen.captioning.registry import load_captioner_with_tags, parse_dtype
    from vlgen.fileio import check_output_file
    from vlgen.hub import name_model_options

    name_model_options(captioner="--model")
    parse_dtype(dtype)

    if on_error not in ("fail", "skip"):
        raise typer.BadParameter(f"{on_error!r} is not fail or skip", param_hint="--on-error")
    if out_file is not None and str(out_file) in STDOUT_NAMES:
        out_file = None  # rows go to stdout as they come; there is nothing to resume from a stream
    parquet_out = None
    if out_file is not None and out_file.suffix.lower() == ".parquet":
        parquet_out, out_file = out_file, out_file.with_suffix(".jsonl")  # the JSONL stays the resumable journal
    items = collect_inputs(inputs, split=split, image_column=image_column)
    # One process per device under `accelerate launch`/`torchrun`. Without CUDA (or with --device cpu) the
    # state must be asked for CPU, else it does not see the launch (WORLD_SIZE/RANK) and every process would
    # caption everything; with CUDA, accelerate picks nccl and one GPU per process as before.
    cpu = not torch.cuda.is_available() or (device is not None and device.startswith("cpu"))
    state = PartialState(cpu=cpu)
    if state.num_processes > 1 and out_file is None:
        raise typer.BadParameter(
            f"{state.num_processes} processes cannot share stdout; give a file (rows are merged into it)",
            param_hint="--out",
        )
    dev = device or (str(state.device) if state.num_processes > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
    done = None
    if out_file is not None:  # before the model loads: a wrong --out costs nothing
        check_output_file(out_file, "--out")
        done = done_file_names(out_file)  # read once: caption_images takes it
    if parquet_out is not None:
        check_output_file(parquet_out, "--out")
    kill_after = os.environ.get("VLGEN_TEST_CAPTION_KILL_AFTER_ROWS")
    captioner = load_captioner_with_tags(
        model, device=dev, dtype=dtype, prompt=caption_prompt, tags_with=tags_with,
        general_threshold=general_threshold, character_threshold=character_threshold,
    )  # fmt: skip
    summary = caption_images(
        captioner,
        items,
        out_file,
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        on_error=on_error,
        num_workers=num_workers,
        process_index=state.process_index,
        num_processes=state.num_processes,
        echo=_write_row,
        barrier=state.wait_for_everyone,
        test_kill_after_rows=int(kill_after) if kill_after else None,
        done=done,
    )
    msg = f"captioned {summary.captioned} images"
    if state.num_processes > 1:
        msg = f"process {state.process_index}/{state.num_processes}: " + msg
    if summary.already_done:
        msg += f", {summary.already_done} already in {out_file}"
    if summary.skipped:
        where = summary.skipped_file or "the lines above"
        msg += f", skipped {len(summary.skipped)} bad images (listed in {where})"
        for s in summary.skipped:
            where = f" in {s['source']}" if "source" in s else ""  # a shard's key: name the shard too
            err.print(f"skipped {s['file_name']}{where}: {s['reason']}")
    if summary.truncated:
        msg += f", {summary.truncated} cut at --max-new-tokens {max_new_tokens} (rows with truncated: true)"
    if summary.out_rows is not None:
        msg += f"; {out_file} holds {summary.out_rows} rows"
    if parquet_out is not None and state.process_index == 0:  # after the merge: the journal is whole
        msg += f"; wrote {parquet_out} ({write_caption_parquet(out_file, parquet_out)} rows)"
    err.print(msg)
