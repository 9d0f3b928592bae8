"""The captioner protocol every family implements, so one trainer and one `vlgen caption` serve them all.

A captioner owns a torch `model` and whatever turns images/captions into tensors (a processor, a
vocabulary). Inference: `generate(images, num_beams=..., max_new_tokens=...) -> list[str]`.
Training (used by `vlgen.captioning.trainer`): `collate(images, captions, max_length) -> batch dict`,
`loss(batch) -> scalar tensor`. Persistence: `save(dir)` / `load(dir_or_hub_id)`, both in the
family's native format (`save_pretrained` for Hugging Face models), so a fine-tuned BLIP directory
also loads with plain `BlipForConditionalGeneration.from_pretrained`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image


class Captioner(ABC):
    family: ClassVar[str]
    model: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Captioner:
        self.model.to(device)
        return self

    @abstractmethod
    def generate(
        self,
        images: Sequence[Image.Image],
        num_beams: int = 1,
        max_new_tokens: int = 30,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Captions for RGB images, one per image, in order."""

    def caption_rows(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[dict]:
        """`{"caption": str}` per image, in order (what `vlgen caption` writes beside `file_name`). Families that can
        tell add `"truncated": True` to a caption that hit `max_new_tokens` (the vision-language family does)."""
        captions = self.generate(images, num_beams=num_beams, max_new_tokens=max_new_tokens, **generate_kwargs)
        return [{"caption": c} for c in captions]

    @abstractmethod
    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        """Training batch: tensors the model's loss needs (pixel_values/input_ids/labels, or features)."""

    @abstractmethod
    def loss(self, batch: dict) -> torch.Tensor:
        """Mean token cross-entropy (plus the family's regulariser) for a collated batch."""

    @abstractmethod
    def save(self, out_dir: str | Path) -> Path:
        """Write the model and its pre/post-processing so that `load(out_dir)` restores it exactly."""

    @classmethod
    @abstractmethod
    def load(cls, ref: str | Path | None = None, device: str | torch.device = "cpu") -> Captioner:
        """From a local directory or a hub id (default: the family's published checkpoint)."""

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(width, height) the model's preprocessing resizes every image to, or None when it keeps the image's
        own size. Image loading (`load_image(..., input_size=)`) reduces larger images as they are decoded (never
        below this), so a 5000 x 5000 upload never sits in memory at full size."""
        return None

    def image_transform(self) -> Callable[[list[Image.Image]], Any] | None:
        """What `generate` does to a batch of images before the model (its processor: resize, rescale, normalise),
        as a picklable function the input workers run (`vlgen.captioning.inputs`); `generate` also takes what it
        returns in place of the images, with the same captions. None (the default): the workers hand over the
        decoded images."""
        return None

    def enable_gradient_checkpointing(self) -> bool:
        """Turn on gradient checkpointing where the model supports it; returns whether it did."""
        if getattr(self.model, "supports_gradient_checkpointing", False):
            self.model.gradient_checkpointing_enable()
            return True
        return False

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def processor_input_size(image_processor: Any) -> tuple[int, int] | None:
    """(width, height) a transformers image processor resizes to: `size` {height, width}, or {shortest_edge: s}
    -> (s, s) (every side ends at least s); None when it does not resize or resizes some other way
    (longest_edge, a pixel budget), in which case images are not reduced on decode."""
    if not getattr(image_processor, "do_resize", False):
        return None
    size = getattr(image_processor, "size", None)
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    height, width, shortest = get("height"), get("width"), get("shortest_edge")
    if height and width and not get("longest_edge"):
        return int(width), int(height)
    if shortest and not get("longest_edge"):
        return int(shortest), int(shortest)
    return None


def strip_captions(texts: Sequence[str]) -> list[str]:
    return [" ".join(t.split()) for t in texts]
