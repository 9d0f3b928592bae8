"""VGG feature stacks for the Gram style metric, written as directories that
`vlgen.metrics.image.gram.load_vgg(dir)` (and `vlgen evaluate images --vgg-weights DIR`) reads:
`vgg.json` ({"cfg": [...]}, torchvision's `make_layers` spec) + `model.safetensors` (the `features` state dict).

- `build_vgg19` (`vlgen tiny vgg19 OUT`): torchvision's VGG19 `features` at full size (20 M parameters, 80 MB),
  seeded random init - the offline stand-in for torchvision's VGG19 IMAGENET1K_V1, so Gram runs without a
  download. Random features still compare colour/texture statistics, but the values are not Gatys et al.'s
  perceptual style distance.
- `build_tiny_vgg`: the same block structure (5 blocks, conv-relu pairs, max-pool after each, so relu1_1 ...
  relu5_1 exist) at toy width, a few KB; for tests and benchmarks (not in `TINY_BUILDERS`).
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


def vgg19_features(seed: int = 0):
    """torchvision's VGG19 `features` (config "E", no batch norm), initialised as `torchvision.models.vgg19(
    weights=None)` initialises its convolutions (Kaiming normal, fan_out, zero bias). Built without the
    120 M-parameter classifier, which the Gram metric never uses (5 s and 500 MB saved)."""
    from torch import nn
    from torchvision.models.vgg import cfgs, make_layers

    with seeded(seed):
        features = make_layers(cfgs["E"])
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return features.eval()


def _write(features, cfg: list, tmp: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in features.state_dict().items()}, str(tmp / "model.safetensors"))
    (tmp / "vgg.json").write_text(json.dumps({"cfg": cfg}) + "\n")


def build_tiny_vgg(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny VGG feature stack (a few KB)."""
    return write_model_dir(out, "vgg", seed, lambda tmp: _write(tiny_vgg(seed), TINY_VGG_CFG, tmp))


def build_vgg19(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random-init torchvision VGG19 `features` (80 MB) for `--vgg-weights`: Gram offline."""
    from torchvision.models.vgg import cfgs

    return write_model_dir(out, "vgg19", seed, lambda tmp: _write(vgg19_features(seed), list(cfgs["E"]), tmp))
