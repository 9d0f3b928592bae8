"""The model card (README.md) written beside a trained LoRA, in the Hugging Face hub's format.

The yaml header carries what the hub indexes (base_model, instance_prompt, tags, widget); the body says
how to use the LoRA in diffusers and in ComfyUI/A1111, the trigger phrase, the training settings and
shows the sample grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vlgen.fileio import atomic_write_text
from vlgen.t2i.lora_config import LoraTrainConfig, unet_lora_layers
from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME

SETTINGS = (
    "resolution", "train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler",
    "lr_warmup_steps", "snr_gamma", "noise_offset", "rank", "train_text_encoder", "with_prior_preservation",
    "class_prompt", "lora_layers", "mixed_precision", "gradient_checkpointing", "use_8bit_adam", "center_crop",
    "random_flip", "aspect_ratio_buckets", "seed",
)  # fmt: skip


def model_card(
    cfg: LoraTrainConfig,
    *,
    steps: int,
    vae: str | None,
    samples: str | None,
    sample_prompt: str | None,
    kohya: bool,
    final_loss: float | None,
) -> str:
    """The README.md text. `samples` is the grid's file name relative to the card."""
    trigger = cfg.instance_prompt
    header: dict[str, Any] = {
        "base_model": cfg.pretrained_model_name_or_path,
        "library_name": "diffusers",
        "license": "openrail++",
        "instance_prompt": trigger,
        "tags": [
            "text-to-image",
            "stable-diffusion-xl",
            "diffusers",
            "lora",
            "dreambooth",
            "template:sd-lora",
            "vlgen",
        ],
    }
    if samples and sample_prompt:
        header["widget"] = [{"text": sample_prompt, "output": {"url": samples}}]
    shown = {"lora_layers": ",".join(unet_lora_layers(cfg))}  # the resolved list, also when left at its default
    rows = "\n".join(f"| `{k}` | {shown.get(k, getattr(cfg, k))} |" for k in SETTINGS)
    kohya_text = (
        f"For ComfyUI, AUTOMATIC1111/Forge and other kohya-format tools use `{KOHYA_WEIGHT_NAME}` "
        "(keys `lora_unet_...` with `.alpha`): copy it to `models/loras/`."
        if kohya
        else "For ComfyUI/A1111, export kohya keys with `--export-format kohya` when training."
    )
    loss_text = f" (final training loss {final_loss:.4f})" if final_loss is not None else ""
    grid = f"![samples]({samples})\n\n*{sample_prompt}* - seeds {cfg.seed}, {cfg.seed + 1}, ...\n" if samples else ""
    return f"""---
{yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip()}
---

# SDXL LoRA: {trigger or cfg.caption_column}

DreamBooth-LoRA weights for **{cfg.pretrained_model_name_or_path}**, trained with `vlgen train lora`
(diffusers + peft + accelerate) for {steps} steps{loss_text}.

- Base model: `{cfg.pretrained_model_name_or_path}`
- VAE used in training: `{vae or "the base model's own"}`
- Trigger: **{trigger}** {"(per-image captions from column `" + cfg.caption_column + "`)" if cfg.caption_column else ""}

{grid}
## Use it

```python
import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline

vae = AutoencoderKL.from_pretrained("{vae or cfg.pretrained_model_name_or_path}", torch_dtype=torch.float16)
pipe = StableDiffusionXLPipeline.from_pretrained(
    "{cfg.pretrained_model_name_or_path}", vae=vae, torch_dtype=torch.float16
).to("cuda")
pipe.load_lora_weights("THIS_DIRECTORY", weight_name="{DIFFUSERS_WEIGHT_NAME}")
image = pipe("{trigger}", num_inference_steps=25).images[0]
```

or `vlgen generate "{trigger}" --base {cfg.pretrained_model_name_or_path} --lora THIS_DIRECTORY --compare --out gen/`.

{kohya_text}

## Training settings

| setting | value |
|---|---|
{rows}

The full resolved configuration is in `config.yaml`; the loss curve in `curves.png` (`history.csv`).
"""


def write_model_card(out_dir: Path, **kwargs) -> Path:
    return atomic_write_text(out_dir / "README.md", model_card(**kwargs))
