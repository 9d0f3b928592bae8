"""Tiny SDXL: a `StableDiffusionXLPipeline` directory with every component of the real one
(stabilityai/stable-diffusion-xl-base-1.0) at toy width, plus a standalone tiny VAE that plays
madebyollin/sdxl-vae-fp16-fix (passed to the pipeline as `vae=`).

What is kept from SDXL, because the code under test depends on it:
- UNet2DConditionModel with `addition_embed_type="text_time"`: the pooled text embedding of
  text_encoder_2 (32 here, 1280 real) is concatenated with 6 time ids x `addition_time_embed_dim`
  (8 here, 256 real) -> `projection_class_embeddings_input_dim` = 32 + 48 = 80 (real 1280 + 1536 = 2816);
- `cross_attention_dim` = hidden of text_encoder + hidden of text_encoder_2 (32 + 32 = 64; real 768 + 1280);
- DownBlock2D then cross-attention blocks, linear projections, more transformer layers deeper down;
- an AutoencoderKL with 4 levels, so `vae_scale_factor` is 8 as in SDXL (64 px image <-> 8x8 latents), 4 latent
  channels, `scaling_factor` 0.13025;
- EulerDiscreteScheduler configured as SDXL base (scaled_linear 0.00085-0.012, steps_offset 1, leading);
- two CLIP tokenizers (model_max_length 77); `tokenizer_2` pads with "!" like OpenCLIP bigG's.
The UNet's `sample_size` is 8 latents, so the pipeline's default output is 64x64.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import component_seed, seeded, write_model_dir
from vlgen.testing.clip import clip_text_kwargs, clip_tokenizer

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

TINY_TEXT_HIDDEN = 32  # each text encoder
TINY_POOLED_DIM = 32  # text_encoder_2's projection_dim (SDXL: 1280)
TINY_TIME_EMBED_DIM = 8  # SDXL: 256
TINY_LATENT_SIZE = 8  # 64 px / vae_scale_factor 8
SDXL_SCALING_FACTOR = 0.13025


def tiny_sdxl_unet() -> UNet2DConditionModel:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=TINY_LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        cross_attention_dim=2 * TINY_TEXT_HIDDEN,  # prompt_embeds = concat(te1 penultimate, te2 penultimate)
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=TINY_POOLED_DIM + 6 * TINY_TIME_EMBED_DIM,  # 32 + 48 = 80
    )


def tiny_sdxl_vae(force_upcast: bool = True) -> AutoencoderKL:
    """4 levels (3 downsamplings): the real `vae_scale_factor` of 8, at 16-32 channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=64,
        scaling_factor=SDXL_SCALING_FACTOR,
        force_upcast=force_upcast,  # sdxl-base: True (fp16 overflows); the fp16-fix VAE: False
    )


def sdxl_scheduler() -> EulerDiscreteScheduler:
    """stable-diffusion-xl-base-1.0's scheduler_config.json (fields EulerDiscreteScheduler reads)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        interpolation_type="linear",
        use_karras_sigmas=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


def tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """The in-memory pipeline that `build_tiny_sdxl` saves (components seeded one by one)."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer()  # pads with <|endoftext|> (CLIP ViT-L)
    tokenizer_2 = clip_tokenizer(pad_token="!")  # pads with "!" = id 0 (OpenCLIP bigG)
    text_common = dict(hidden_size=TINY_TEXT_HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    with seeded(component_seed(seed, 0)):
        unet = tiny_sdxl_unet()
    with seeded(component_seed(seed, 1)):
        vae = tiny_sdxl_vae()
    with seeded(component_seed(seed, 2)):
        # CLIP ViT-L/14's text tower: quick_gelu; SDXL uses its penultimate hidden states only.
        te1_config = CLIPTextConfig(
            hidden_act="quick_gelu", projection_dim=32, **text_common, **clip_text_kwargs(tokenizer)
        )
        text_encoder = CLIPTextModel(te1_config)
    with seeded(component_seed(seed, 3)):
        # OpenCLIP bigG's text tower: gelu, with the projection whose output is SDXL's pooled embedding.
        te2_config = CLIPTextConfig(
            hidden_act="gelu", projection_dim=TINY_POOLED_DIM, **text_common, **clip_text_kwargs(tokenizer_2)
        )
        text_encoder_2 = CLIPTextModelWithProjection(te2_config)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=sdxl_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval()  # as `from_pretrained` returns them (SDPA takes another kernel in train mode)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sdxl(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny SDXL pipeline saved with `save_pretrained` (safetensors; about 2 MB)."""

    def build(tmp: Path) -> None:
        tiny_sdxl_pipeline(seed).save_pretrained(tmp)

    return write_model_dir(out, "sdxl", seed, build)


def tiny_sdxl_vae_fp16_fix(seed: int = 0) -> AutoencoderKL:
    """The in-memory VAE that `build_tiny_sdxl_vae` saves: same architecture as the pipeline's, other weights."""
    with seeded(component_seed(seed, 15)):
        return tiny_sdxl_vae(force_upcast=False).eval()


def build_tiny_sdxl_vae(out: str | os.PathLike, seed: int = 0) -> Path:
    """A standalone tiny VAE compatible with the tiny SDXL pipeline, standing in for sdxl-vae-fp16-fix."""

    def build(tmp: Path) -> None:
        tiny_sdxl_vae_fp16_fix(seed).save_pretrained(tmp)

    return write_model_dir(out, "sdxl-vae", seed, build)
