"""Class images for DreamBooth's prior-preservation loss (Ruiz et al. 2023, eq. 2).

The base model, prompted with the class prompt ("a 3D icon"), draws what it already knows; training on
those images alongside the instance images keeps the model from forgetting the class while it learns
the trigger. They are generated once into --class-data-dir and reused by every later run (and by a
resumed run): only the missing ones are drawn, each with its own seed, so an interrupted generation
resumes where it stopped and the set does not depend on how often it was interrupted.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlgen.fileio import atomic_write_bytes
from vlgen.t2i.families.base import Components


def class_image_name(i: int) -> str:
    return f"class-{i:05d}.png"


def ensure_class_images(
    class_dir: Path,
    class_prompt: str,
    n: int,
    parts: Components,
    *,
    resolution: int,
    seed: int,
    num_inference_steps: int,
    batch_size: int,
    device: torch.device,
    log=print,
    call_kwargs: dict | None = None,
) -> int:
    """Generate the missing class images `class-00000.png`... in `class_dir`; returns how many were made."""
    import io

    class_dir.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(n) if not (class_dir / class_image_name(i)).is_file()]
    existing = len([p for p in class_dir.iterdir() if p.suffix.lower() == ".png"])
    if not missing or existing >= n:
        return 0
    log(f"generating {len(missing)} class images for '{class_prompt}' in {class_dir}")
    pipe = base_pipeline(parts)
    call_kwargs = call_kwargs or {}
    from vlgen.progress import track

    for start in track(range(0, len(missing), batch_size), "class images"):
        chunk = missing[start : start + batch_size]
        generators = [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in chunk]
        images = pipe(
            [class_prompt] * len(chunk),
            height=resolution,
            width=resolution,
            num_inference_steps=num_inference_steps,
            generator=generators,
            **call_kwargs,
        ).images
        for i, im in zip(chunk, images, strict=True):
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            atomic_write_bytes(class_dir / class_image_name(i), buf.getvalue())
    return len(missing)


def base_pipeline(parts: Components, unet=None):
    """The base family's pipeline over already-loaded components (no second copy of any weights). Inference
    uses the base's own scheduler, not the training one."""
    return parts.family.pipeline(parts, denoiser=unet)


sdxl_pipeline = base_pipeline  # the old name, from when SDXL was the only family
