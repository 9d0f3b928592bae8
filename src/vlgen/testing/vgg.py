"""Tiny VGG for the Gram style metric: torchvision's `make_layers` with VGG19's block structure (5 blocks,
conv-relu pairs, max-pool after each, so relu1_1 ... relu5_1 exist) at toy width.

Written as `vgg.json` ({"cfg": [...]}) + `model.safetensors` (the `features` state dict), which
`vlgen.metrics.image.gram.load_vgg(dir)` reads. Not in `TINY_BUILDERS` (those are hub-model stand-ins);
tests and benchmarks build it directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlgen.testing._common import seeded, write_model_dir

# VGG19 is [64, 64, M, 128, 128, M, 256 x4, M, 512 x4, M, 512 x4, M]; same shape of blocks, 2 convs per block.
TINY_VGG_CFG: list[int | str] = [4, 4, "M", 8, 8, "M", 8, 8, "M", 16, 16, "M", 16, 16, "M"]


def tiny_vgg(seed: int = 0):
    """The in-memory `features` stack (nn.Sequential) that `build_tiny_vgg` saves."""
    from torchvision.models.vgg import make_layers

    with seeded(seed):
        return make_layers(TINY_VGG_CFG).eval()


def build_tiny_vgg(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny VGG feature stack (a few KB)."""

    def build(tmp: Path) -> None:
        from safetensors.torch import save_file

        features = tiny_vgg(seed)
        save_file({k: v.contiguous() for k, v in features.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "vgg.json").write_text(json.dumps({"cfg": TINY_VGG_CFG}) + "\n")

    return write_model_dir(out, "vgg", seed, build)
