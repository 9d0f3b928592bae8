"""Merge a LoRA into its base model: a plain SDXL pipeline directory that loads without peft.

    W' = W + scale * (alpha / rank) * B @ A          (for every adapted linear/conv of the UNet/text encoders)

Users do this to ship one checkpoint, to stack a new LoRA on top of a fused one, or (the offline demo) to
turn a briefly trained tiny model into the base that a DreamBooth-LoRA then fine-tunes.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlgen.errors import ConfigError
from vlgen.fileio import atomic_directory


def fuse_lora_into_base(
    base: str | os.PathLike,
    lora: str | os.PathLike,
    out: str | os.PathLike,
    *,
    lora_scale: float = 1.0,
    vae: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Load `base` (hub id or directory) + `lora` (a `vlgen train lora` output dir or .safetensors), fuse the
    LoRA into the weights at `lora_scale`, drop the adapter and save the pipeline (fp32) to `out`.

    The write is atomic: the pipeline is saved to a sibling temp directory, then renamed. Returns `out`."""
    import torch

    from vlgen.t2i.generate import apply_lora, load_pipeline, lora_file

    out = Path(out)
    lora_file(lora)  # fail on a bad LoRA path before loading the base
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"fuse output {out} exists and is not empty (pass overwrite=True to replace it)")
    pipe = load_pipeline(str(base), vae, device="cpu")  # CPU: fp32 weights, the dtype the fused model is saved in
    apply_lora(pipe, lora, lora_scale)
    with torch.no_grad():
        pipe.fuse_lora(lora_scale=1.0, adapter_names=["lora"])  # the scale is already set on the adapter
    pipe.unload_lora_weights()  # removes the (now fused) adapter layers; the merged weights stay
    with atomic_directory(out) as tmp:  # an old `out` stays whole until the new one is complete
        pipe.save_pretrained(tmp)
    return out
