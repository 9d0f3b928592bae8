"""Tiny DINO ViT for the DINO image-similarity metric, laid out like facebook/dino-vits16: a bare `ViTModel`
without the pooling layer (DINO features are the [CLS] token of `last_hidden_state`), qkv bias on,
`ViTImageProcessor` with ImageNet mean/std - at toy width and 32 px.

Load it as the metric loads the real one: `ViTModel.from_pretrained(path, add_pooling_layer=False)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import seeded, write_model_dir

if TYPE_CHECKING:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

TINY_IMAGE_SIZE = 32


def tiny_dino_config() -> ViTConfig:
    from transformers import ViTConfig

    return ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
        qkv_bias=True,
    )


def dino_image_processor(image_size: int = TINY_IMAGE_SIZE) -> ViTImageProcessor:
    from transformers import ViTImageProcessor
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

    return ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        resample=PILImageResampling.BICUBIC,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
    )


def tiny_dino(seed: int = 0) -> tuple[ViTModel, ViTImageProcessor]:
    """The in-memory model and image processor that `build_tiny_dino` saves."""
    from transformers import ViTModel

    with seeded(seed):
        model = ViTModel(tiny_dino_config(), add_pooling_layer=False).eval()
    return model, dino_image_processor()


def build_tiny_dino(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny DINO `ViTModel` (no pooler) + `ViTImageProcessor` (well under 1 MB)."""

    def build(tmp: Path) -> None:
        model, image_processor = tiny_dino(seed)
        model.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)

    return write_model_dir(out, "dino", seed, build)
