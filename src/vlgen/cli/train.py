"""`vlgen train caption`: train or fine-tune a captioner (thin wrapper over vlgen.captioning.trainer).

Options are generated from `CaptionTrainConfig`, so the yaml recipes in `configs/` and the CLI share
names. Multi-GPU/multi-node: `accelerate launch -m vlgen train caption ...`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vlgen.captioning.train_config import CaptionTrainConfig
from vlgen.cli._options import with_dataclass_options

app = typer.Typer(help="Train captioners.", no_args_is_help=True)

HELP = {
    "model": "cnn-lstm (new), blip, vit-gpt2 (published checkpoints), a hub id or a model directory.",
    "data": "imagefolder dataset directory (metadata.jsonl with splits).",
    "out": "output directory: best/, last/, checkpoints/, history.csv, curves.png, config.yaml.",
    "caption_column": "metadata.jsonl column holding the caption(s).",
    "lr_scheduler": "constant, linear (warm-up then decay), cosine, cosine_restarts (CosineAnnealingWarmRestarts).",
    "restart_epochs": "period of cosine_restarts in epochs.",
    "checkpointing_steps": "save a resumable checkpoint every N optimiser steps (default: every epoch).",
    "resume_from_checkpoint": "'latest' or a checkpoint directory.",
    "metric_for_best_model": "CIDEr+BLEU-4 (default, as BLIP/LAVIS), loss, or any metric name.",
    "encoder": "CNN-LSTM encoder: resnet50, densenet201 or tiny.",
    "encoder_weights": "CNN-LSTM encoder init: default (ImageNet) or none.",
    "attention": "CNN-LSTM soft attention over the spatial feature map (Show, Attend and Tell).",
    "cache_features": "cache frozen-encoder features on disk (CNN-LSTM).",
}


@app.command("caption")
@with_dataclass_options(CaptionTrainConfig, help=HELP)
def caption(config_file: Path | None, **overrides) -> None:
    """Train or fine-tune a CNN-LSTM, BLIP or ViT-GPT2 captioner."""
    from vlgen.captioning.trainer import train_captioner
    from vlgen.cli._console import out
    from vlgen.config import resolve_config

    cfg = resolve_config(CaptionTrainConfig, config_file, overrides)
    summary = train_captioner(cfg)
    if summary:
        out.print(
            f"trained {summary['steps']} steps in {summary['seconds']} s; best model: {Path(cfg.out) / 'best'} "
            f"({cfg.metric_for_best_model} {summary['best_score']})"
        )
