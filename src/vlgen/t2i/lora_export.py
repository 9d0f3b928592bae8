"""Writing a trained LoRA: diffusers' format, and kohya's (ComfyUI / A1111 / Forge / InvokeAI).

What differs per base family (the pipeline class whose `save_lora_weights` writes the file, kohya's
prefixes, Flux's fused projections) comes from the family (vlgen.t2i.families); SDXL is described here.

diffusers' file `pytorch_lora_weights.safetensors` has keys such as
    unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight   (r, in)
    text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora.up.weight         (out, r)
which `pipeline.load_lora_weights(DIR)` reads; with `--lora-layers` beyond the attention projections the keys
keep peft's spelling (`unet.down_blocks.0.resnets.0.conv1.lora_A.weight`), which it reads as well.
ComfyUI and A1111 expect kohya's sd-scripts layout:
one flat name per adapted module with the dots turned into underscores, a `lora_unet_` /
`lora_te1_` / `lora_te2_` prefix, `lora_down`/`lora_up` weights and a scalar `.alpha` per module:
    lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight
    lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha          () = lora_alpha
The output scale of a kohya LoRA is alpha / rank (peft's lora_alpha / r), so writing peft's
lora_alpha as `.alpha` keeps the effect identical. ComfyUI maps diffusers-layout UNet names
(`down_blocks_1_...`) as well as the original SGM ones (`input_blocks_4_1_...`), and diffusers'
own kohya loader reads this file back (tests/t2i check that it gives the same images).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vlgen.fileio import atomic_file

if TYPE_CHECKING:
    from vlgen.t2i.families.base import T2IFamily

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
KOHYA_WEIGHT_NAME = "pytorch_lora_weights_kohya.safetensors"
KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}  # SDXL's


def _family(family: T2IFamily | None) -> T2IFamily:
    from vlgen.t2i.families import FAMILIES

    return family if family is not None else FAMILIES["sdxl"]


def peft_state_dicts(models: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """{component: peft LoRA state dict (`...to_q.lora_A.weight`)} for every model that has an adapter."""
    from peft.utils import get_peft_model_state_dict

    return {name: get_peft_model_state_dict(m) for name, m in models.items() if m is not None}


def save_diffusers_lora(
    out_dir: Path, models: dict[str, torch.nn.Module], family: T2IFamily | None = None, weight_name: str | None = None
) -> Path:
    """`OUT/pytorch_lora_weights.safetensors` in diffusers' format (the family's pipeline class writes it),
    written beside and renamed into place. `models`: {component name: adapted model}."""
    from diffusers.utils import convert_state_dict_to_diffusers

    sds = {}
    for name, sd in peft_state_dicts(models).items():
        converted = convert_state_dict_to_diffusers(sd)
        # diffusers' converter renames the attention projections only (`to_q.lora_A` -> `to_q.lora.down`); with
        # --lora-layers conv1,... (or DoRA's magnitude vectors) the dict would mix both spellings, and
        # `load_lora_weights` guesses the format from the first key, so it would drop one half. Such a dict is
        # written in peft's spelling throughout, which `load_lora_weights` reads as it is.
        mixed = any(".lora_A." in k or ".lora_B." in k or "lora_magnitude_vector" in k for k in converted)
        sds[name] = sd if mixed else converted
    path = out_dir / (weight_name or DIFFUSERS_WEIGHT_NAME)
    with atomic_file(path) as tmp:  # diffusers writes SAVE_DIRECTORY/WEIGHT_NAME: point both at the temp file
        _family(family).save_lora_weights(tmp.parent, tmp.name, sds)
    return path


def to_kohya(
    peft_sds: dict[str, dict[str, torch.Tensor]], alphas: dict[str, float], family: T2IFamily | None = None
) -> dict[str, torch.Tensor]:
    """peft state dicts per component -> one kohya-keyed dict (with a 0-d `.alpha` per adapted module)."""
    return _family(family).to_kohya(peft_sds, alphas)


def kohya_plain(peft_sds: dict[str, dict[str, torch.Tensor]], alphas: dict[str, float], prefix_of) -> dict:
    """One kohya module per peft module: `prefix_of(component)` + the dotted path with "_" (UNet families,
    text encoders)."""
    out: dict[str, torch.Tensor] = {}
    for component, sd in peft_sds.items():
        prefix = prefix_of(component)
        for key, w in sd.items():
            module, kind = key.rsplit(".lora_", 1)  # "down_blocks.1...to_q", "A.weight"
            if kind not in ("A.weight", "B.weight"):
                raise ValueError(f"{component} key {key!r}: only plain LoRA (lora_A/lora_B) exports to kohya")
            if component.startswith("text_encoder") and module.startswith(("encoder.", "embeddings.")):
                # transformers 5 flattened CLIPTextModel (no `text_model.`); kohya's names - which ComfyUI and
                # A1111 map - are the original layout's: lora_te1_text_model_encoder_layers_0_self_attn_q_proj
                module = "text_model." + module
            name = prefix + module.replace(".", "_")
            out[f"{name}.{'lora_down' if kind == 'A.weight' else 'lora_up'}.weight"] = w.contiguous()
            out[f"{name}.alpha"] = torch.tensor(float(alphas[component]))
    return out


def save_kohya_lora(
    out_dir: Path, models: dict[str, torch.nn.Module], metadata: dict[str, str], family: T2IFamily | None = None
) -> Path:
    """`OUT/pytorch_lora_weights_kohya.safetensors`, with kohya's `ss_*` metadata for A1111's LoRA tab."""
    from safetensors.torch import save_file

    family = _family(family)
    sds = peft_state_dicts(models)
    alphas = {name: _lora_alpha(m) for name, m in models.items() if m is not None}
    tensors = to_kohya(sds, alphas, family)
    # peft's r, not a lora_down's rows: Flux's fused q/k/v modules hold 3 r of them
    rank = next(int(m.peft_config["default"].r) for m in models.values() if m is not None)
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(next(iter(alphas.values()))),
        "ss_base_model_version": family.kohya_base_model_version,
        "modelspec.architecture": family.modelspec_architecture,
        "modelspec.sai_model_spec": "1.0.0",
        **metadata,
    }
    path = out_dir / KOHYA_WEIGHT_NAME
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _lora_alpha(model: torch.nn.Module) -> float:
    """peft's lora_alpha of the default adapter (the same for every module: one LoraConfig)."""
    cfg = model.peft_config["default"]
    return float(cfg.lora_alpha)
