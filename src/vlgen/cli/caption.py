"""`vlgen caption INPUT... --model M`: caption images in batches (thin wrapper over vlgen.captioning.batch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from vlgen.cli._console import err

# `--out` values that mean "stream the rows to stdout" (reading them back to resume would block on a pipe).
STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _write_row(row: dict) -> None:
    """One JSON line to stdout as is (not through rich: no markup, emoji codes or wrapping in the data)."""
    sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    sys.stdout.flush()  # a reader downstream (`| jq`) sees each row as it is captioned


def caption(
    inputs: list[Path] = typer.Argument(..., help="Image files, image folders, or dataset folders."),
    model: str = typer.Option("blip", "--model", help="blip, vit-gpt2, a hub id, or a model directory."),
    out_file: Path | None = typer.Option(
        None, "--out", help="JSONL output (appended; rerun resumes); '-' or /dev/stdout streams to stdout."
    ),
    num_beams: int = typer.Option(4, help="Beam width (1 = greedy)."),
    batch_size: int | None = typer.Option(
        None, help="Images per forward pass (default: 32 decoding sequences, i.e. 32 // num_beams images)."
    ),
    max_new_tokens: int = typer.Option(30, help="Longest caption, in tokens."),
    split: str | None = typer.Option(None, help="Only this split of a dataset folder (train/validation/test)."),
    on_error: str = typer.Option("fail", help="fail: stop at a bad image; skip: report it and go on."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
) -> None:
    """Caption images; one JSON line per image (`file_name`, `caption`)."""
    import torch
    from accelerate import PartialState

    from vlgen.captioning.batch import caption_images, collect_inputs, done_file_names
    from vlgen.captioning.registry import load_captioner
    from vlgen.fileio import check_output_file
    from vlgen.hub import name_model_options

    name_model_options(captioner="--model")
    from vlgen.hub import name_model_options

    name_model_options(captioner="--model")

    if on_error not in ("fail", "skip"):
        raise typer.BadParameter(f"{on_error!r} is not fail or skip", param_hint="--on-error")
    if out_file is not None and str(out_file) in STDOUT_NAMES:
        out_file = None  # rows go to stdout as they come; there is nothing to resume from a stream
    items = collect_inputs(inputs, split=split)
    state = PartialState()  # under `accelerate launch`, one process per device
    dev = device or (str(state.device) if state.num_processes > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
    target = out_file
    if out_file is not None and state.num_processes > 1:
        target = out_file.with_name(f"{out_file.stem}.rank{state.process_index}{out_file.suffix}")
    if target is not None:  # before the model loads: a wrong --out costs nothing
        check_output_file(target, "--out")
        done_file_names(target)
    captioner = load_captioner(model, device=dev)
    summary = caption_images(
        captioner,
        items,
        target,
        batch_size=batch_size,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        on_error=on_error,
        process_index=state.process_index,
        num_processes=state.num_processes,
        echo=_write_row,
    )
    msg = f"captioned {summary.captioned} images"
    if summary.already_done:
        msg += f", {summary.already_done} already in {out_file}"
    if summary.skipped:
        where = summary.skipped_file or "the lines above"
        msg += f", skipped {len(summary.skipped)} bad images (listed in {where})"
        for s in summary.skipped:
            err.print(f"skipped {s['file_name']}: {s['reason']}")
    err.print(msg)
