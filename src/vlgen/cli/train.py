"""`vlgen train caption`: train or fine-tune a captioner (thin wrapper over vlgen.captioning.trainer).

Options are generated from `CaptionTrainConfig`, so the yaml recipes in `configs/` and the CLI share
names. Multi-GPU/multi-node: `accelerate launch -m vlgen train caption ...`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vlgen.captioning.train_config import CaptionTrainConfig
from vlgen.cli._options import with_dataclass_options

app = typer.Typer(
    help="Train captioners (train caption) and DreamBooth LoRAs of SDXL, SD 1.5, Flux.1 (train lora).",
    no_args_is_help=True,
)

# One line each; `with_dataclass_options` appends "[default: ...]" (fields whose default is None say it here).
HELP = {
    "model": "what trains: cnn-lstm (new), blip, vit-gpt2, florence-2 (published checkpoints), or a hub id or "
    "model directory of one of these families (other vision-language models caption but do not train).",
    "data": "imagefolder dataset directory (metadata.jsonl with splits); required.",
    "out": "output directory: best/, last/, checkpoints/, history.csv, curves.png, config.yaml; required.",
    "caption_column": "metadata.jsonl column holding the caption(s).",
    "train_split": "split to train on.",
    "validation_split": "split for validation loss and metrics each epoch (null in a yaml: none).",
    "epochs": "passes over the training split.",
    "max_train_steps": "stop after N optimiser steps (default: from --epochs).",
    "train_batch_size": "images per training batch (per device).",
    "eval_batch_size": "images per validation batch.",
    "learning_rate": "AdamW learning rate.",
    "weight_decay": "AdamW weight decay.",
    "lr_scheduler": "as in transformers and train lora: constant has no warm-up, constant_with_warmup has; "
    "cosine_with_restarts (or cosine_restarts) restarts every --restart-epochs.",
    "lr_warmup_steps": "linear warm-up steps of the schedule (every one but constant).",
    "restart_epochs": "period of cosine_with_restarts in epochs (after the warm-up).",
    "gradient_accumulation_steps": "batches per optimiser step.",
    "max_grad_norm": "clip gradients to this norm (null in a yaml: no clipping).",
    "mixed_precision": "no, fp16 or bf16 (autocast; CUDA).",
    "gradient_checkpointing": "recompute activations in backward to save memory (BLIP, ViT-GPT2, Florence-2).",
    "max_length": "longest training caption in tokens (longer ones are cut).",
    "seed": "seed for initialisation, data order and dropout.",
    "checkpointing_steps": "save a resumable checkpoint every N optimiser steps (default: every epoch).",
    "checkpoints_total_limit": "keep only the newest N checkpoints (null in a yaml: keep all).",
    "resume_from_checkpoint": "'latest' or a checkpoint directory (default: start a new run).",
    "overwrite_output_dir": "clear an --out that holds another run (it is refused otherwise).",
    "early_stopping_patience": "stop after N epochs without a better best metric (default: never).",
    "metric_for_best_model": "CIDEr+BLEU-4 (as BLIP/LAVIS), loss, or any metric name.",
    "num_beams": "beam width when decoding validation captions.",
    "max_new_tokens": "longest validation caption in tokens.",
    "report_to": "none or tensorboard (logs under --out; pip install 'vlgen[tensorboard]').",
    "num_workers": "DataLoader worker processes.",
    "cpu": "train on the CPU even when a GPU is present.",
    "encoder": "CNN-LSTM encoder: resnet50, densenet201 or tiny.",
    "encoder_weights": "CNN-LSTM encoder init: default (ImageNet) or none.",
    "freeze_encoder": "CNN-LSTM: keep the encoder frozen (train the decoder only).",
    "attention": "CNN-LSTM soft attention over the spatial feature map (Show, Attend and Tell).",
    "image_size": "CNN-LSTM input side length in pixels.",
    "embed_dim": "CNN-LSTM word embedding size.",
    "hidden_dim": "CNN-LSTM LSTM hidden size.",
    "attention_dim": "CNN-LSTM attention layer size.",
    "dropout": "CNN-LSTM dropout before the word classifier.",
    "alpha_c": "CNN-LSTM doubly stochastic attention regularisation weight (Show, Attend and Tell).",
    "min_count": "CNN-LSTM vocabulary: words seen at least this often.",
    "cache_features": "cache frozen-encoder features on disk (CNN-LSTM).",
    "cache_dir": "feature cache folder (default: $VLGEN_CACHE_DIR or ~/.cache/vlgen/features).",
}


def _score(metric: str, value) -> str:
    """The best model's score as people read it: 2.65e-17, not 2.6500783447471926e-17; a loss as the loss."""
    from vlgen.report.html import format_number

    if not isinstance(value, float):
        return f"{metric} {value}"
    return f"{metric} {format_number(-value if metric == 'loss' else value)}"  # the trainer maximises -loss


@app.command("caption")
@with_dataclass_options(CaptionTrainConfig, help=HELP)
def caption(config_file: Path | None, **overrides) -> None:
    """Train or fine-tune a captioner. Families that train: cnn-lstm, blip, vit-gpt2, florence-2."""
    from vlgen.captioning.trainer import train_captioner
    from vlgen.cli._console import out
    from vlgen.config import resolve_config
    from vlgen.hub import name_model_options

    name_model_options(captioner="--model")
    cfg = resolve_config(CaptionTrainConfig, config_file, overrides)
    summary = train_captioner(cfg)
    if summary:
        out.print(
            f"trained {summary['steps']} steps in {summary['seconds']} s; best model: {Path(cfg.out) / 'best'} "
            f"({_score(cfg.metric_for_best_model, summary['best_score'])})"
        )


LORA_HELP = {
    "pretrained_model_name_or_path": "base: SDXL, SD 1.5 or Flux.1 (hub id, directory or single .safetensors).",
    "pretrained_vae_model_name_or_path": "VAE: hub id or directory (default: the base's own VAE; also 'none').",
    "instance_data_dir": "folder of training images, optionally with metadata.jsonl; required.",
    "output_dir": "LoRA weights, model card, samples, config.yaml, history.csv, checkpoints/; required.",
    "instance_prompt": "trigger phrase, e.g. 'a 3D icon in the style of TOK' (default: none, with --caption-column).",
    "caption_column": "metadata.jsonl column with per-image prompts (default: --instance-prompt for all).",
    "with_prior_preservation": "DreamBooth prior preservation with class images (needs --class-prompt).",
    "class_data_dir": "class images for prior preservation (default: OUT/class_images; generated if missing).",
    "class_prompt": "prompt of the class images, e.g. 'a 3D icon' (default: none).",
    "num_class_images": "class images to use (generated with the base when there are fewer).",
    "prior_loss_weight": "weight of the class images' loss.",
    "sample_batch_size": "batch size when generating class images.",
    "resolution": "training side length (multiple of 8); with buckets, the target area is resolution^2.",
    "center_crop": "centre crops instead of random (seeded) ones.",
    "random_flip": "flip images horizontally at random.",
    "aspect_ratio_buckets": "train at the aspect ratio nearest each image's instead of square crops.",
    "train_batch_size": "images per training batch (per device).",
    "num_train_epochs": "passes over the training images (unless --max-train-steps).",
    "max_train_steps": "stop after N optimiser steps (default: from --num-train-epochs).",
    "gradient_accumulation_steps": "batches per optimiser step.",
    "gradient_checkpointing": "recompute activations in backward to save memory.",
    "learning_rate": "UNet (Flux: transformer) LoRA learning rate.",
    "text_encoder_lr": "text encoders' LoRA learning rate (with --train-text-encoder).",
    "lr_scheduler": "diffusers' schedule names; hyphens work too (cosine-with-restarts).",
    "lr_warmup_steps": "warm-up steps of the schedule.",
    "lr_num_cycles": "hard restarts of cosine_with_restarts.",
    "lr_power": "power of the polynomial schedule.",
    "snr_gamma": "Min-SNR weighting gamma (Hang et al. 2023), 5.0 recommended; SD 1.5/SDXL (default: off).",
    "noise_offset": "noise offset (brighter/darker images); 0 for none; SD 1.5/SDXL.",
    "family": "sdxl, sd15 or flux (default: read from the base's model_index.json).",
    "weighting_scheme": "Flux: timestep density / loss weights of flow matching (default none: uniform).",
    "logit_mean": "Flux: mean of the logit_normal timestep density.",
    "logit_std": "Flux: std of the logit_normal timestep density.",
    "mode_scale": "Flux: scale of the mode timestep density.",
    "guidance_scale": "FLUX.1 [dev]: the guidance input while training (1.0 in most Flux LoRA recipes).",
    "max_sequence_length": "Flux: T5 tokens per prompt (schnell: 256).",
    "use_8bit_adam": "bitsandbytes AdamW8bit (optimiser state in 8 bits; CUDA or CPU).",
    "adam_beta1": "AdamW beta1.",
    "adam_beta2": "AdamW beta2.",
    "adam_weight_decay": "AdamW weight decay of the UNet LoRA.",
    "adam_weight_decay_text_encoder": "AdamW weight decay of the text encoders' LoRA.",
    "adam_epsilon": "AdamW epsilon.",
    "max_grad_norm": "clip gradients to this norm.",
    "rank": "LoRA rank r (lora_alpha = r: scale 1).",
    "lora_layers": "comma-separated UNet/transformer modules to adapt, e.g. to_k,to_q,to_v,to_out.0,conv1,conv2 "
    "(LoCon) (default: the family's: attention projections; Flux also its feed-forwards).",
    "use_dora": "DoRA (weight-decomposed LoRA, peft) instead of LoRA; not with --export-format kohya.",
    "caption_dropout_rate": "train on the empty prompt this often (0-1).",
    "use_ema": "keep an EMA of the LoRA weights: OUT/ holds it, the raw weights go to OUT/raw/.",
    "ema_decay": "EMA decay (diffusers' EMAModel, warmed up as min(decay, (1 + step) / (10 + step))).",
    "validation_metrics": "score validation images: CLIP-T,CLIP-I,DINO or all (default: off).",
    "metric_for_best_model": "one of --validation-metrics: keep the best LoRA in OUT/best/ (default: none).",
    "clip_model": "CLIP for --validation-metrics (default openai/clip-vit-large-patch14).",
    "dino_model": "DINO for --validation-metrics (default facebook/dino-vits16).",
    "train_text_encoder": "also train LoRAs on the CLIP text encoders (SDXL both, SD 1.5 its one, Flux CLIP only).",
    "mixed_precision": "no, fp16 or bf16 (CUDA).",
    "quantize_base": "load the frozen UNet/transformer quantised to save memory (QLoRA): nf4 (bitsandbytes) "
    "or int8 (torchao); pip install 'vlgen[quant]' (default: not quantised).",
    "seed": "seed for LoRA init, crops, noise and timesteps.",
    "cache_latents": "encode every image with the VAE once, before training.",
    "cache_text_embeddings": "encode every prompt once (when the text encoders are frozen).",
    "checkpointing_steps": "save a resumable checkpoint every N steps.",
    "checkpoints_total_limit": "keep only the newest N checkpoints (default: keep all).",
    "resume_from_checkpoint": "'latest' or a checkpoint directory (default: start a new run).",
    "overwrite_output_dir": "clear an --output-dir that holds another run (it is refused otherwise).",
    "validation_prompt": "prompt of the validation images (default: --instance-prompt).",
    "num_validation_images": "validation images per validation (seeds seed, seed+1, ...).",
    "validation_steps": "validate every N steps (default: only at the end).",
    "num_inference_steps": "denoising steps for validation and class images.",
    "export_format": "kohya: also write pytorch_lora_weights_kohya.safetensors for ComfyUI/A1111.",
    "cpu": "train on the CPU even when a GPU is present.",
}
# Short names next to diffusers' long ones.
LORA_ALIASES = {
    "pretrained_model_name_or_path": "--base",
    "pretrained_vae_model_name_or_path": "--vae",
    "instance_data_dir": "--data",
    "output_dir": "--out",
}


def _with_aliases(f, aliases: dict[str, str]):
    """Add extra option names to options generated by `with_dataclass_options`."""
    sig = f.__signature__
    params = []
    for p in sig.parameters.values():
        if p.name in aliases:
            p.default.param_decls = (*p.default.param_decls, aliases[p.name])
        params.append(p)
    f.__signature__ = sig.replace(parameters=params)
    return f


def lora(config_file: Path | None, **overrides) -> None:
    """DreamBooth + LoRA fine-tuning of SDXL, SD 1.5 or Flux.1 (diffusers' train_dreambooth_lora_*.py options)."""
    from vlgen.cli._console import out
    from vlgen.config import resolve_config
    from vlgen.hub import name_model_options
    from vlgen.t2i.lora_config import LoraTrainConfig
    from vlgen.t2i.lora_trainer import train_lora

    name_model_options(base="--base", vae="--vae")
    cfg = resolve_config(LoraTrainConfig, config_file, overrides)
    summary = train_lora(cfg)
    if summary:
        files = ", ".join(summary["files"])
        out.print(f"trained {summary['steps']} steps in {summary['seconds']} s; LoRA: {Path(cfg.output_dir)} ({files})")


def _register_lora() -> None:
    from vlgen.t2i.lora_config import LoraTrainConfig

    command = _with_aliases(with_dataclass_options(LoraTrainConfig, help=LORA_HELP)(lora), LORA_ALIASES)
    app.command("lora")(command)


_register_lora()
