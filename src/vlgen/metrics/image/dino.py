"""DINO image similarity, as DreamBooth defines it (Ruiz et al. 2023, Sec. 4.1): the mean cosine between the
ViT-S/16 DINO embeddings (the [CLS] token of the last layer) of generated and reference images, over all
generated x reference pairs. Unlike CLIP-I it is not trained to ignore appearance differences within a
class, so it rewards subject/style fidelity more sharply.

The default checkpoint is `facebook/dino-vits16`, a bare `ViTModel` without a pooler; its own image
processor (resize to 224, ImageNet mean/std) prepares the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlgen.metrics.image._common import batches


@dataclass
class DinoBundle:
    model: Any  # transformers.ViTModel without pooling layer, eval mode
    processor: Any  # its image processor
    name: str
    source: str
    device: str = "cpu"


def load_dino(ref: str, *, device: str = "cpu") -> DinoBundle:
    """`ref` is a local directory or a hub id (resolved through `vlgen.hub`, fails fast offline)."""
    from transformers import AutoImageProcessor, ViTModel

    from vlgen.hub import resolve_model

    resolved = resolve_model(ref, what="DINO model")
    model = ViTModel.from_pretrained(resolved.path, add_pooling_layer=False, dtype=torch.float32).to(device).eval()
    processor = AutoImageProcessor.from_pretrained(resolved.path)
    return DinoBundle(model, processor, ref, resolved.source, device)


@torch.inference_mode()
def dino_embeddings(dino: DinoBundle, images: Sequence[Any], *, batch_size: int = 16) -> torch.Tensor:
    """(N, D) [CLS] embeddings, `last_hidden_state[:, 0]` (after the final LayerNorm), of PIL images."""
    out = []
    for batch in batches(images, batch_size):
        pixel_values = dino.processor(images=batch, return_tensors="pt")["pixel_values"].to(dino.device)
        hidden = dino.model(pixel_values=pixel_values).last_hidden_state  # (B, 1 + patches, D)
        out.append(hidden[:, 0].float().cpu())
    return torch.cat(out) if out else torch.empty(0, dino.model.config.hidden_size)
