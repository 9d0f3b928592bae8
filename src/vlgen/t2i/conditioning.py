"""Loading a base's parts, and the prompt conditioning the families share.

- loading, for any family: `load_components` (the family read from the base's model_index.json), a separate
  VAE (`resolve_vae`, `load_vae`), and `drop_frozen` / `restore_frozen` (the Components methods, as functions);
- `tokenize`: the CLIP tokenisers' padding, as the pipelines pad (SDXL, SD 1.5);
- SDXL's inputs besides the latents: `encode_prompt` (prompt embeddings), `time_ids_tensor`, `unet_conditioning`.

SDXL conditions its UNet on (Podell et al. 2023):
- `encoder_hidden_states` (B, 77, 768 + 1280 = 2048): the *penultimate* hidden states of CLIP ViT-L
  (text_encoder) and OpenCLIP bigG (text_encoder_2), concatenated on the feature axis;
- `text_embeds` (B, 1280): text_encoder_2's pooled, projected embedding;
- `time_ids` (B, 6): original_size + crops_coords_top_left + target_size (see buckets.py).
`add_embedding` takes concat(text_embeds, 6 x 256 Fourier features of time_ids) = 2816 inputs.
This mirrors `StableDiffusionXLPipeline.encode_prompt`, so training and inference agree exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vlgen.hub import resolve_model

if TYPE_CHECKING:
    from vlgen.t2i.families.base import Components

NO_VAE = ("", "none", "None")


def __getattr__(name: str):
    # `SdxlComponents` was the SDXL-only form of what every family now loads (families.base.Components).
    if name == "SdxlComponents":
        from vlgen.t2i.families.base import Components

        return Components
    raise AttributeError(name)


def resolve_vae(ref: str | None) -> str | None:
    return None if ref is None or ref in NO_VAE else ref


def vae_subfolder(path: Path) -> str | None:
    """Where a separate VAE's config.json is: the folder itself (madebyollin/sdxl-vae-fp16-fix) or, for a whole
    pipeline given as the VAE, its vae/ subfolder."""
    return "vae" if not (path / "config.json").is_file() and (path / "vae" / "config.json").is_file() else None


def load_vae(vae_ref: str | None, base_path: Path):
    """A separate VAE (a directory with config.json, or a repo with a vae/ subfolder), else the base's."""
    from diffusers import AutoencoderKL

    if vae_ref is None:
        return AutoencoderKL.from_pretrained(base_path, subfolder="vae")
    path = resolve_model(vae_ref, what="VAE").path
    return AutoencoderKL.from_pretrained(path, subfolder=vae_subfolder(path))


def load_components(base: str, vae_ref: str | None, family: str | None = None, **denoiser_kwargs) -> Components:
    """The parts of a base loaded one by one (the trainer needs them separately, fp32 on CPU), in its
    family's names; `family` None: read from the base's model_index.json (vlgen.t2i.families).
    `denoiser_kwargs` (quantization_config, torch_dtype) go to the denoiser's `from_pretrained`."""
    from vlgen.t2i.families import family_of_path, resolve_base

    path = resolve_base(base)
    return family_of_path(path, family).load_components(path, resolve_vae(vae_ref), **denoiser_kwargs)


def drop_frozen(parts: Components, vae: bool, text_encoders: bool) -> None:
    parts.drop_frozen(vae=vae, text_encoders=text_encoders)


def restore_frozen(parts: Components, device, dtype) -> None:
    parts.restore_frozen(device, dtype)


def tokenize(tokenizers: list, prompts: list[str]) -> list[torch.Tensor]:
    """(B, 77) input ids per tokenizer, padded to model_max_length as the pipeline pads."""
    return [
        tok(
            prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        for tok in tokenizers
    ]


def encode_prompt(text_encoders: list, input_ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> prompt_embeds (B, 77, D1 + D2), pooled_prompt_embeds (B, P) from the last encoder.

    Penultimate layer: SDXL was trained on it ("clip skip 2" is built in); pooled: text_encoder_2's
    `text_embeds` (its final-layer EOS token through `text_projection`).
    """
    embeds, pooled = [], None
    for te, ids in zip(text_encoders, input_ids, strict=True):
        out = te(ids.to(te.device), output_hidden_states=True)
        pooled = out[0]  # CLIPTextModelWithProjection: text_embeds (B, P); overwritten until the last encoder
        embeds.append(out.hidden_states[-2])  # (B, 77, D_i)
    return torch.cat(embeds, dim=-1), pooled


def time_ids_tensor(rows: list[list[int]], device, dtype) -> torch.Tensor:
    """(B, 6) add_time_ids from per-sample [orig_h, orig_w, top, left, target_h, target_w]."""
    return torch.tensor(rows, device=device, dtype=dtype)


def unet_conditioning(
    prompt_embeds: torch.Tensor, pooled: torch.Tensor, time_ids: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """encoder_hidden_states and added_cond_kwargs in the form `UNet2DConditionModel.forward` takes."""
    return prompt_embeds, {"text_embeds": pooled, "time_ids": time_ids}
