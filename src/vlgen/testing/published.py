"""The published architectures (BLIP-base, ViT-GPT2, Florence-2-base, SDXL base, SD 1.5, FLUX.1-dev) built from
their real config files, with random weights - on the meta device (shapes only, no memory) or on CPU.

The configs in `configs/` are copies of the hub repos' config.json files (each names its source in
`_source`). Slow tests use them to check that code written against the tiny models also fits the real
shapes: SDXL's prompt embeddings are 768 + 1280 = 2048 wide, its pooled embedding (1280) plus 6 time ids
x 256 make the 2816 inputs of `add_embedding`, and 128x128 latents come back as 128x128 noise; FLUX.1-dev
takes 1024 px as 64x64 latents of 16 channels packed 2x2 into 4096 tokens of 64, next to 512 T5 tokens of 4096.
The SD 1.5 and FLUX.1-dev files were written from the published settings (the hub cannot be reached here);
their `_source` says so. Their schedulers' configs also feed the tiny pipelines (`vlgen.testing.sd15`, `.flux`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlgen.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from diffusers import FluxPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

CONFIG_DIR = Path(__file__).parent / "configs"

PUBLISHED_MODELS: dict[str, str] = {  # name -> the checkpoint whose config it is
    "blip-base": "Salesforce/blip-image-captioning-base",
    "vit-gpt2": "nlconnect/vit-gpt2-image-captioning",
    "florence-2-base": "florence-community/Florence-2-base",
    "sdxl-base/unet": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-base/vae": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-base/text_encoder": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-base/text_encoder_2": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-base/scheduler": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd15/unet": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd15/vae": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd15/text_encoder": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd15/scheduler": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "flux-dev/transformer": "black-forest-labs/FLUX.1-dev",
    "flux-dev/vae": "black-forest-labs/FLUX.1-dev",
    "flux-dev/text_encoder": "black-forest-labs/FLUX.1-dev",
    "flux-dev/text_encoder_2": "black-forest-labs/FLUX.1-dev",
    "flux-dev/scheduler": "black-forest-labs/FLUX.1-dev",
}
_SCHEDULERS = {  # published name -> diffusers scheduler class
    "sdxl-base/scheduler": "EulerDiscreteScheduler",
    "sd15/scheduler": "PNDMScheduler",
    "flux-dev/scheduler": "FlowMatchEulerDiscreteScheduler",
}


def published_config(name: str) -> dict[str, Any]:
    """The stored config of `name` (see PUBLISHED_MODELS), without our `_source` note."""
    if name not in PUBLISHED_MODELS:
        raise ConfigError(f"unknown published config '{name}'; known: {', '.join(PUBLISHED_MODELS)}")
    config = json.loads((CONFIG_DIR / f"{name}.json").read_text(encoding="utf-8"))
    config.pop("_source", None)
    return config


def _transformers_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("architectures", "model_type")}


def published_model(name: str, device: str | torch.device = "meta") -> Any:
    """A randomly initialised model of the published architecture `name`, created on `device`.

    On "meta" nothing is allocated or initialised (instant, any size); forward passes on meta tensors
    propagate shapes and dtypes only. On "cpu" the weights are random (seed with `torch.manual_seed`).
    The scheduler has no weights and ignores `device`.
    """
    import torch

    config = published_config(name)
    if name in _SCHEDULERS:
        import diffusers

        return getattr(diffusers, _SCHEDULERS[name]).from_config(config)
    with torch.device(device):
        if name == "blip-base":
            from transformers import BlipConfig, BlipForConditionalGeneration

            return BlipForConditionalGeneration(BlipConfig(**_transformers_kwargs(config))).eval()
        if name == "vit-gpt2":
            from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

            encoder = ViTConfig(**_transformers_kwargs(config.pop("encoder")))
            decoder = GPT2Config(**_transformers_kwargs(config.pop("decoder")))
            ved = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
            for key in ("bos_token_id", "decoder_start_token_id", "eos_token_id", "pad_token_id"):
                setattr(ved, key, config[key])
            model = VisionEncoderDecoderModel(config=ved).eval()
            gen = model.generation_config
            gen.bos_token_id = gen.decoder_start_token_id = gen.eos_token_id = gen.pad_token_id = config["eos_token_id"]
            return model
        if name == "florence-2-base":
            from transformers import Florence2Config, Florence2ForConditionalGeneration

            model = Florence2ForConditionalGeneration(Florence2Config(**_transformers_kwargs(config))).eval()
            gen = model.generation_config  # as generation_config.json: </s> starts and ends
            gen.decoder_start_token_id, gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = 2, 0, 2, 1
            gen.forced_eos_token_id = 2
            return model
        if name in ("sdxl-base/unet", "sd15/unet"):
            from diffusers import UNet2DConditionModel

            return UNet2DConditionModel.from_config(config).eval()
        if name in ("sdxl-base/vae", "sd15/vae", "flux-dev/vae"):
            from diffusers import AutoencoderKL

            return AutoencoderKL.from_config(config).eval()
        if name == "flux-dev/transformer":
            from diffusers import FluxTransformer2DModel

            return FluxTransformer2DModel.from_config(config).eval()
        if name == "flux-dev/text_encoder_2":
            from transformers import T5Config, T5EncoderModel

            return T5EncoderModel(T5Config(**_transformers_kwargs(config))).eval()
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if name == "sdxl-base/text_encoder_2" else CLIPTextModel
        return cls(CLIPTextConfig(**_transformers_kwargs(config))).eval()


def published_sdxl_pipeline(device: str | torch.device = "meta") -> StableDiffusionXLPipeline:
    """SDXL base's five published components in a `StableDiffusionXLPipeline`, random weights on `device`.

    The real CLIP BPE vocab (49,408 tokens) is not available offline, so the two tokenizers are the tiny
    ones from `vlgen.testing.clip`: their ids are valid inputs of the real-size text encoders, and every
    shape downstream of the tokenizer is the real one.
    """
    from diffusers import StableDiffusionXLPipeline

    from vlgen.testing.clip import clip_tokenizer

    pipe = StableDiffusionXLPipeline(
        vae=published_model("sdxl-base/vae", device),
        text_encoder=published_model("sdxl-base/text_encoder", device),
        text_encoder_2=published_model("sdxl-base/text_encoder_2", device),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"),
        unet=published_model("sdxl-base/unet", device),
        scheduler=published_model("sdxl-base/scheduler"),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def published_sd15_pipeline(device: str | torch.device = "meta") -> StableDiffusionPipeline:
    """SD 1.5's four published components in a `StableDiffusionPipeline` (no safety checker), random weights on
    `device`; the tokenizer is the tiny CLIP one (see `published_sdxl_pipeline`)."""
    from diffusers import StableDiffusionPipeline

    from vlgen.testing.clip import clip_tokenizer

    pipe = StableDiffusionPipeline(
        vae=published_model("sd15/vae", device),
        text_encoder=published_model("sd15/text_encoder", device),
        tokenizer=clip_tokenizer(),
        unet=published_model("sd15/unet", device),
        scheduler=published_model("sd15/scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def published_flux_pipeline(device: str | torch.device = "meta") -> FluxPipeline:
    """FLUX.1-dev's five published components in a `FluxPipeline`, random weights on `device`.

    Both tokenizers are the tiny ones (CLIP BPE from `vlgen.testing.clip`, T5 Unigram from `vlgen.testing.flux`):
    their ids are valid inputs of the real-size encoders (49,408 and 32,128 embeddings), so every shape after the
    tokenizers is the real one.
    """
    from diffusers import FluxPipeline

    from vlgen.testing.clip import clip_tokenizer
    from vlgen.testing.flux import t5_tokenizer

    pipe = FluxPipeline(
        scheduler=published_model("flux-dev/scheduler"),
        vae=published_model("flux-dev/vae", device),
        text_encoder=published_model("flux-dev/text_encoder", device),
        tokenizer=clip_tokenizer(),
        text_encoder_2=published_model("flux-dev/text_encoder_2", device),
        tokenizer_2=t5_tokenizer(),
        transformer=published_model("flux-dev/transformer", device),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
