"""What every tiny builder shares: seeding without side effects, and an atomic model directory; and the UNet
and VAE sizes both tiny Stable Diffusion bases (sd15.py, sdxl.py) are built at.

A builder writes into a fresh temporary directory next to `out` and renames it into place only when
everything was saved, so an interrupted build never leaves a half-written model that `from_pretrained`
would half-load. A `vlgen_tiny.json` marker records what was built; only a directory carrying it (or an
empty one) is ever replaced, so `vlgen tiny blip ~/important` cannot wipe a user's folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlgen.errors import VlgenError
from vlgen.fileio import atomic_directory, check_output_dir, write_json

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

MARKER = "vlgen_tiny.json"
TINY_SD_LATENT_SIZE = 8  # 64 px / vae_scale_factor 8 (SD 1.5: 64 latents at 512 px; SDXL: 128 at 1024)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """`torch.manual_seed(seed)` inside, the caller's global RNG state restored afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def write_model_dir(out: str | os.PathLike, name: str, seed: int, build: Callable[[Path], None]) -> Path:
    """Run `build(tmp_dir)` and move the result to `out` atomically. Returns the absolute `out`."""
    out = Path(out).expanduser().absolute()
    if out.exists():
        if not out.is_dir():
            raise VlgenError(f"output '{out}' is a file; expected a directory for tiny model '{name}'")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise VlgenError(
                f"output directory '{out}' is not empty and was not written by `vlgen tiny`; choose a new directory"
            )
    check_output_dir(out, "OUT")  # a read-only folder or a file in the way: one line before any work
    with atomic_directory(out) as tmp:
        build(tmp)
        write_json(tmp / MARKER, {"name": name, "seed": seed, "random_weights": True})
    return out


def spread_weights(model, std: float = 0.3) -> None:
    """Redraw every weight matrix of `model` from N(0, std) (norms and biases kept), in place.

    At transformers' init (std 0.02) a tiny vision-language model's decoder all but ignores its few image tokens:
    every image gets the same random caption, and a test comparing captions of different images (batched against
    one at a time) could not fail. Wider weights make the captions depend on the image. Uses the global RNG: call
    it inside `seeded`.
    """
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                p.normal_(0.0, std)


def component_seed(seed: int, index: int) -> int:
    """A distinct seed per component of a multi-part model (unet=0, vae=1, ...).

    Seeding each part separately means changing one part's config does not shift the others' weights, and
    the standalone tiny VAE (`sdxl-vae`) never equals the pipeline's own VAE for any pair of seeds.
    """
    return seed * 16 + index


def file_digests(root: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256} of every file under `root`: equal dicts mean byte-identical directories."""
    import hashlib

    root = Path(root)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tiny_sd_unet(**layout: Any) -> UNet2DConditionModel:
    """A UNet2DConditionModel at the tiny SD size: 8x8 latents, 4 channels in and out, two levels 32 and 64
    wide of 2 ResNets each. `layout` is the family's own: block types and their order, attention heads,
    cross-attention width, extra conditioning (each family writes it out where it calls this)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=TINY_SD_LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        **layout,
    )


def tiny_vae(scaling_factor: float, latent_channels: int = 4, sample_size: int = 64, **family: Any) -> AutoencoderKL:
    """4 levels (3 downsamplings): the real `vae_scale_factor` of 8, at 16-32 channels; 4 latent channels (SD 1.5,
    SDXL) or 16 (Flux). `family`: what else the family's VAE sets (SDXL: force_upcast; Flux: shift, no quant convs)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=latent_channels,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
        **family,
    )
