"""Tiny random models of the real classes, for tests, benchmarks and the offline demo.

`build_tiny(name, out, seed)` writes a directory that the normal loading code reads exactly like a
downloaded checkpoint (`resolve_model(out)` -> `from_pretrained(path)`): same classes, same config schema,
same file layout, same special-token conventions - only the widths are toy-sized and the weights random.
The way diffusers and transformers test themselves, without any network access.

Same `seed` -> byte-identical files (weights and tokenizer); a different seed -> different weights.
Builder options go through `build_tiny(name, out, seed, **options)`: `sdxl` takes
`fit_vae=DIR`, which fits its VAE on a folder of images (seeded, so still deterministic), and `vae_steps=N`
(see vlgen.testing.sdxl.fit_tiny_sdxl_vae); `flux` takes `guidance_embeds=False` (the same as `flux-schnell`).
Importing this package is cheap: torch/transformers/diffusers are imported when a builder runs.

    name        what (stand-in for)
    blip        BlipForConditionalGeneration + BlipProcessor      (Salesforce/blip-image-captioning-base)
    vit-gpt2    VisionEncoderDecoderModel + ViT proc. + GPT-2 tok (nlconnect/vit-gpt2-image-captioning)
    florence-2  Florence2ForConditionalGeneration + processor     (florence-community/Florence-2-base)
    qwen2-vl    Qwen2VLForConditionalGeneration + processor, chat (Qwen/Qwen2-VL-2B-Instruct)
    sdxl        StableDiffusionXLPipeline                         (stabilityai/stable-diffusion-xl-base-1.0)
    sdxl-vae    AutoencoderKL for `vae=`                          (madebyollin/sdxl-vae-fp16-fix)
    sd15        StableDiffusionPipeline, no safety checker        (stable-diffusion-v1-5/stable-diffusion-v1-5)
    flux        FluxPipeline, guidance-distilled; T5 + CLIP       (black-forest-labs/FLUX.1-dev)
                use at height=width=64 (FluxPipeline's default is 1024 px) with a short max_sequence_length
    flux-schnell
                FluxPipeline without guidance embeds, shift 1.0   (black-forest-labs/FLUX.1-schnell)
    clip        CLIPModel + CLIPProcessor                         (openai/clip-vit-large-patch14)
    dino        ViTModel without pooler + ViTImageProcessor       (facebook/dino-vits16)
    cnn-lstm    vlgen's own CNN-LSTM captioner                    (vlgen.captioning.cnn_lstm)
    wd-tagger   timm ViT + selected_tags.csv, the WD layout        (SmilingWolf/wd-vit-tagger-v3)
    vgg19       torchvision VGG19 `features`, full size (80 MB)   (torchvision VGG19_Weights.IMAGENET1K_V1)
                for `vlgen evaluate images --vgg-weights DIR`: the Gram metric offline
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

from vlgen.errors import VlgenError
from vlgen.testing._common import MARKER, file_digests, seeded, write_model_dir
from vlgen.testing.blip import build_tiny_blip
from vlgen.testing.clip import build_tiny_clip
from vlgen.testing.dino import build_tiny_dino
from vlgen.testing.florence2 import build_tiny_florence2
from vlgen.testing.flux import build_tiny_flux, build_tiny_flux_schnell
from vlgen.testing.qwen2_vl import build_tiny_qwen2_vl
from vlgen.testing.sd15 import build_tiny_sd15
from vlgen.testing.sdxl import build_tiny_sdxl, build_tiny_sdxl_vae
from vlgen.testing.vgg import build_vgg19
from vlgen.testing.vit_gpt2 import build_tiny_vit_gpt2
from vlgen.testing.wd_tagger import build_tiny_wd_tagger


def build_tiny_cnn_lstm(out: str | os.PathLike, seed: int = 0) -> Path:
    """vlgen's CNN-LSTM captioner; the builder lives with the model in `vlgen.captioning.cnn_lstm`."""
    try:
        from vlgen.captioning.cnn_lstm import build_tiny_cnn_lstm as build
    except ImportError as e:
        raise VlgenError(f"tiny model 'cnn-lstm' is unavailable: vlgen.captioning.cnn_lstm won't import ({e})") from e

    def write(tmp: Path) -> None:
        with seeded(seed):  # its torch.manual_seed must not leak into the caller's RNG state
            build(tmp, seed=seed)

    return write_model_dir(out, "cnn-lstm", seed, write)


TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "blip": build_tiny_blip,
    "vit-gpt2": build_tiny_vit_gpt2,
    "florence-2": build_tiny_florence2,
    "qwen2-vl": build_tiny_qwen2_vl,
    "sdxl": build_tiny_sdxl,
    "sdxl-vae": build_tiny_sdxl_vae,
    "sd15": build_tiny_sd15,
    "flux": build_tiny_flux,
    "flux-schnell": build_tiny_flux_schnell,
    "clip": build_tiny_clip,
    "dino": build_tiny_dino,
    "cnn-lstm": build_tiny_cnn_lstm,
    "vgg19": build_vgg19,
    "wd-tagger": build_tiny_wd_tagger,
}


def builder_options(name: str) -> list[str]:
    """The keyword options builder `name` takes besides `out` and `seed` (e.g. sdxl: fit_vae, vae_steps)."""
    params = inspect.signature(TINY_BUILDERS[name]).parameters
    return [p for p in params if p not in ("out", "seed")]


def build_tiny(name: str, out: str | os.PathLike, seed: int = 0, **options) -> Path:
    """Build tiny model `name` (a key of TINY_BUILDERS) into directory `out`; returns its absolute path.

    `options` are passed to the builder (None values are dropped); one it does not take is a VlgenError.
    """
    if name not in TINY_BUILDERS:
        raise VlgenError(f"unknown tiny model '{name}'; valid names: {', '.join(TINY_BUILDERS)}")
    options = {k: v for k, v in options.items() if v is not None}
    valid = builder_options(name)
    unknown = [k for k in options if k not in valid]
    if unknown:
        takes = f"it takes: {', '.join(valid)}" if valid else "it takes none"
        raise VlgenError(f"tiny model '{name}' has no option {', '.join(unknown)} ({takes})")
    return TINY_BUILDERS[name](out, seed=seed, **options)


__all__ = [
    "MARKER",
    "TINY_BUILDERS",
    "build_tiny",
    "builder_options",
    "build_tiny_blip",
    "build_tiny_clip",
    "build_tiny_cnn_lstm",
    "build_tiny_dino",
    "build_tiny_florence2",
    "build_tiny_flux",
    "build_tiny_flux_schnell",
    "build_tiny_qwen2_vl",
    "build_tiny_sd15",
    "build_tiny_sdxl",
    "build_tiny_sdxl_vae",
    "build_tiny_vit_gpt2",
    "build_tiny_wd_tagger",
    "build_vgg19",
    "file_digests",
]
