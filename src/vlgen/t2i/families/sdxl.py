"""Stable Diffusion XL (Podell et al. 2023): `StableDiffusionXLPipeline`, stabilityai/stable-diffusion-xl-base-1.0.

UNet2DConditionModel on 4-channel latents; two CLIP text encoders whose penultimate hidden states are
concatenated (B, 77, 2048), text_encoder_2's pooled projection (B, 1280) and 6 size/crop ids
(vlgen.t2i.conditioning has the details); DDPM epsilon (or v) prediction. Kohya names: lora_unet_,
lora_te1_, lora_te2_.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlgen.t2i.families.base import GenerationDefaults, Prediction, T2IFamily

KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}


class SdxlFamily(T2IFamily):
    name = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    denoiser_name = "unet"
    denoiser_class = "UNet2DConditionModel"
    tokenizer_names = ("tokenizer", "tokenizer_2")
    text_encoder_names = ("text_encoder", "text_encoder_2")
    text_encoder_classes = ("CLIPTextModel", "CLIPTextModelWithProjection")
    lora_text_encoders = ("text_encoder", "text_encoder_2")
    default_hub_id = "stabilityai/stable-diffusion-xl-base-1.0"
    kohya_base_model_version = "sdxl_base_v1-0"
    modelspec_architecture = "stable-diffusion-xl-v1-base/lora"

    @property
    def default_lora_targets(self) -> tuple[str, ...]:  # type: ignore[override]
        from vlgen.t2i.lora_config import UNET_TARGET_MODULES

        return UNET_TARGET_MODULES

    @property
    def kohya_layers(self) -> tuple[str, ...]:  # type: ignore[override]
        from vlgen.t2i.lora_config import KOHYA_UNET_LAYERS

        return KOHYA_UNET_LAYERS

    def generation_defaults(self, denoiser_config: Any = None) -> GenerationDefaults:
        return GenerationDefaults(
            num_inference_steps=30, guidance_scale=5.0, resolution=_unet_resolution(denoiser_config, 1024)
        )

    def load_tokenizer(self, path: Path, name: str) -> Any:
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(path, subfolder=name)

    def load_noise_scheduler(self, path: Path) -> Any:
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_pretrained(path, subfolder="scheduler")

    def tokenize(self, tokenizers, prompts, cfg=None):
        from vlgen.t2i.conditioning import tokenize

        return tokenize(tokenizers, prompts)

    def encode(self, text_encoders, input_ids, grad=False):
        from vlgen.t2i.conditioning import encode_prompt

        embeds, pooled = encode_prompt(text_encoders, input_ids)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}  # (B, 77, D1 + D2), (B, P)

    def predict(self, denoiser, noisy: Prediction, cond, batch, cfg):
        dtype = noisy.noisy.dtype
        return denoiser(
            noisy.noisy,
            noisy.timesteps,
            cond["prompt_embeds"].to(dtype),
            added_cond_kwargs={
                "text_embeds": cond["pooled_prompt_embeds"].to(dtype),
                "time_ids": batch["time_ids"].to(dtype),  # (n, 6)
            },
            return_dict=False,
        )[0]  # (n, 4, h, w)

    def pipeline_extra_kwargs(self) -> dict[str, Any]:
        return {"add_watermarker": False}

    def native_resolution(self, pipe) -> int:
        return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)

    def kohya_prefix(self, component: str) -> str:
        return KOHYA_PREFIX[component]


def _unet_resolution(config: Any, default: int) -> int:
    """The UNet's native image side (sample_size x 8), or `default` before a model is loaded."""
    if config is None:
        return default
    return int(config.sample_size) * 8
