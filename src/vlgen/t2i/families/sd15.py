"""Stable Diffusion 1.5 (Rombach et al. 2022): `StableDiffusionPipeline`, stable-diffusion-v1-5/stable-diffusion-v1-5.

UNet2DConditionModel on 4-channel latents at 512 px, conditioned on one CLIP ViT-L text encoder's last
hidden states (B, 77, 768) only; DDPM epsilon prediction (v-prediction for SD 2.x-style bases, read from the
scheduler config). Kohya names: lora_unet_, lora_te_.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlgen.t2i.families.base import GenerationDefaults, Prediction, T2IFamily
from vlgen.t2i.families.sdxl import _unet_resolution


class Sd15Family(T2IFamily):
    name = "sd15"
    pipeline_class = "StableDiffusionPipeline"
    denoiser_name = "unet"
    denoiser_class = "UNet2DConditionModel"
    tokenizer_names = ("tokenizer",)
    text_encoder_names = ("text_encoder",)
    text_encoder_classes = ("CLIPTextModel",)
    lora_text_encoders = ("text_encoder",)
    default_hub_id = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    kohya_base_model_version = "sd_v1"
    modelspec_architecture = "stable-diffusion-v1/lora"

    @property
    def default_lora_targets(self) -> tuple[str, ...]:  # type: ignore[override]
        from vlgen.t2i.lora_config import UNET_TARGET_MODULES

        return UNET_TARGET_MODULES

    @property
    def kohya_layers(self) -> tuple[str, ...]:  # type: ignore[override]
        from vlgen.t2i.lora_config import KOHYA_UNET_LAYERS

        return KOHYA_UNET_LAYERS

    def generation_defaults(self, denoiser_config: Any = None) -> GenerationDefaults:
        # StableDiffusionPipeline's own defaults: 50 steps, guidance 7.5, 512 px.
        return GenerationDefaults(
            num_inference_steps=50, guidance_scale=7.5, resolution=_unet_resolution(denoiser_config, 512)
        )

    def licence_note(self, denoiser_config: Any = None, base: str = "") -> str | None:
        return "CreativeML OpenRAIL-M: the base's use restrictions carry over to this LoRA and its images."

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
        # StableDiffusionPipeline.encode_prompt without clip_skip: the last hidden state (after the final norm).
        (te,), (ids,) = text_encoders, input_ids
        return {"prompt_embeds": te(ids.to(te.device))[0]}  # (B, 77, 768)

    def predict(self, denoiser, noisy: Prediction, cond, batch, cfg):
        return denoiser(noisy.noisy, noisy.timesteps, cond["prompt_embeds"].to(noisy.noisy.dtype), return_dict=False)[
            0
        ]  # (n, 4, h, w)

    def pipeline_extra_kwargs(self) -> dict[str, Any]:
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def native_resolution(self, pipe) -> int:
        return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)

    def kohya_prefix(self, component: str) -> str:
        return {"unet": "lora_unet_", "text_encoder": "lora_te_"}[component]
