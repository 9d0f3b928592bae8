"""Tiny Stable Diffusion 1.5: a `StableDiffusionPipeline` directory with every component of the real one
(stable-diffusion-v1-5/stable-diffusion-v1-5) at toy width, and no safety checker.

What is kept from SD 1.5, because the code under test depends on it:
- UNet2DConditionModel without `addition_embed_type`: the only conditioning is cross-attention on the text
  encoder's last hidden states, so `cross_attention_dim` = its hidden size (32 here, 768 real);
- SD 1.5's block layout: cross-attention on the higher-resolution levels and a plain DownBlock2D / UpBlock2D at
  the lowest (real: 3 CrossAttn levels + 1 plain; here 1 + 1), conv (not linear) `proj_in`/`proj_out` in the
  transformers, and `attention_head_dim` used as the number of heads, as SD 1.5's old config does (8 real, 4 here);
- an AutoencoderKL with 4 levels, so `vae_scale_factor` is 8 (64 px image <-> 8x8 latents), 4 latent channels,
  `scaling_factor` 0.18215;
- one CLIP text encoder (ViT-L/14's: quick_gelu) and a CLIP tokenizer padding with `<|endoftext|>` (77 tokens);
- PNDMScheduler from SD 1.5's scheduler_config.json (scaled_linear 0.00085-0.012, steps_offset 1, skip_prk_steps,
  epsilon prediction), read from `configs/sd15/scheduler.json`;
- `safety_checker=None`, `feature_extractor=None`, `requires_safety_checker=False`, as fine-tuning scripts load it.
The UNet's `sample_size` is 8 latents, so the pipeline's default output is 64x64.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import component_seed, seeded, tiny_sd_unet, tiny_vae, write_model_dir
from vlgen.testing.clip import clip_text_kwargs, clip_tokenizer

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

TINY_TEXT_HIDDEN = 32  # CLIP ViT-L/14: 768
SD15_SCALING_FACTOR = 0.18215


def tiny_sd15_unet() -> UNet2DConditionModel:
    return tiny_sd_unet(
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=4,  # SD 1.5's config means heads here: 4 heads of 8 channels at 32 wide
        cross_attention_dim=TINY_TEXT_HIDDEN,  # prompt_embeds = the text encoder's last hidden states
    )


def tiny_sd15_vae() -> AutoencoderKL:
    return tiny_vae(scaling_factor=SD15_SCALING_FACTOR)


def sd15_scheduler() -> PNDMScheduler:
    """stable-diffusion-v1-5's scheduler_config.json, as stored in `configs/sd15/scheduler.json`."""
    from diffusers import PNDMScheduler

    from vlgen.testing.published import published_config

    return PNDMScheduler.from_config(published_config("sd15/scheduler"))


def tiny_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """The in-memory pipeline that `build_tiny_sd15` saves (components seeded one by one)."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()  # pads with <|endoftext|> (CLIP ViT-L)
    with seeded(component_seed(seed, 0)):
        unet = tiny_sd15_unet()
    with seeded(component_seed(seed, 1)):
        vae = tiny_sd15_vae()
    with seeded(component_seed(seed, 2)):
        config = CLIPTextConfig(
            hidden_size=TINY_TEXT_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            hidden_act="quick_gelu",
            projection_dim=TINY_TEXT_HIDDEN,
            **clip_text_kwargs(tokenizer),
        )
        text_encoder = CLIPTextModel(config)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    for module in (unet, vae, text_encoder):
        module.eval()  # as `from_pretrained` returns them
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sd15(out: str | os.PathLike, seed: int = 0) -> Path:
    """Tiny SD 1.5 pipeline saved with `save_pretrained` (safetensors; about 6 MB), random weights."""

    def build(tmp: Path) -> None:
        tiny_sd15_pipeline(seed).save_pretrained(tmp)

    return write_model_dir(out, "sd15", seed, build)
