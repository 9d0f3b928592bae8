"""vlgen: vision-language generation in both directions.

Image -> text (CNN-LSTM, BLIP, ViT-GPT2 captioners, prompt inversion), text -> image (SDXL DreamBooth-LoRA),
and the metrics for both. Importing this package does no work and imports no heavy library: the names below
are loaded from their modules on first use (PEP 562), so `import vlgen` stays instant.

    import vlgen
    captions = vlgen.caption(["cat.jpg"], model="blip", num_beams=3)          # image -> text
    images = vlgen.text_to_image(["a red circle"], num_inference_steps=20)    # text -> image
    scores = vlgen.compute_caption_metrics(captions, [["a cat on a bed"]])    # metrics

Every name's docstring has a runnable example; the README's "Python API" section shows them together.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it (__getattr__ and __dir__ read it). tests/test_api.py checks that __all__ and
# the TYPE_CHECKING imports below (what IDEs and type checkers read) name exactly these.
_EXPORTS: dict[str, str] = {
    # image -> text
    "Captioner": "vlgen.captioning.base",
    "load_captioner": "vlgen.captioning.registry",
    "caption": "vlgen.captioning.registry",
    "caption_folder": "vlgen.captioning.registry",
    # data
    "lint_captions": "vlgen.data.lint",
    # metrics
    "CaptionScores": "vlgen.metrics.text",
    "compute_caption_metrics": "vlgen.metrics.text",
    "ImageScores": "vlgen.metrics.image",
    "compute_image_metrics": "vlgen.metrics.image",
    # training
    "resolve_config": "vlgen.config",
    "CaptionTrainConfig": "vlgen.captioning.train_config",
    "train_captioner": "vlgen.captioning.trainer",
    "LoraTrainConfig": "vlgen.t2i.lora_config",
    "train_lora": "vlgen.t2i.lora_trainer",
    # text -> image
    "GenerateSettings": "vlgen.t2i.generate",
    "load_pipeline": "vlgen.t2i.generate",
    "text_to_image": "vlgen.t2i.generate",
    "generate": "vlgen.t2i.generate",
    # round trips
    "RoundtripConfig": "vlgen.roundtrip.config",
    "RoundtripResult": "vlgen.roundtrip.run",
    "roundtrip_prompts": "vlgen.roundtrip.run",
    "roundtrip_images": "vlgen.roundtrip.run",
    # errors: every error a user can cause is a VlgenError with a one-line message
    "VlgenError": "vlgen.errors",
}

# Written out (not built from _EXPORTS) so that linters and IDEs read it statically; the test checks they agree.
__all__ = [
    "__version__",
    "Captioner",
    "load_captioner",
    "caption",
    "caption_folder",
    "lint_captions",
    "CaptionScores",
    "compute_caption_metrics",
    "ImageScores",
    "compute_image_metrics",
    "resolve_config",
    "CaptionTrainConfig",
    "train_captioner",
    "LoraTrainConfig",
    "train_lora",
    "GenerateSettings",
    "load_pipeline",
    "text_to_image",
    "generate",
    "RoundtripConfig",
    "RoundtripResult",
    "roundtrip_prompts",
    "roundtrip_images",
    "VlgenError",
]

if TYPE_CHECKING:
    from vlgen.captioning.base import Captioner
    from vlgen.captioning.registry import caption, caption_folder, load_captioner
    from vlgen.captioning.train_config import CaptionTrainConfig
    from vlgen.captioning.trainer import train_captioner
    from vlgen.config import resolve_config
    from vlgen.data.lint import lint_captions
    from vlgen.errors import VlgenError
    from vlgen.metrics.image import ImageScores, compute_image_metrics
    from vlgen.metrics.text import CaptionScores, compute_caption_metrics
    from vlgen.roundtrip.config import RoundtripConfig
    from vlgen.roundtrip.run import RoundtripResult, roundtrip_images, roundtrip_prompts
    from vlgen.t2i.generate import GenerateSettings, generate, load_pipeline, text_to_image
    from vlgen.t2i.lora_config import LoraTrainConfig
    from vlgen.t2i.lora_trainer import train_lora


def __getattr__(name: str) -> Any:
    """Import an exported name's module on first access and keep the name here (later lookups are direct)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
