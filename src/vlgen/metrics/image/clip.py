"""CLIP-T (image-text alignment) and CLIP-I (image-image similarity) with a transformers `CLIPModel`.

CLIP-T follows CLIPScore (Hessel et al. 2021) on torchmetrics' scale: per image
``100 * max(cos(E_image, E_text), 0)``, the corpus value is the mean over images. Two deliberate, documented
differences from torchmetrics 1.9's `CLIPScore` (which cannot run with transformers 5 here):

* torchmetrics clamps the *mean* at 0; we clamp each image (Hessel's definition), so a per-image score is
  never negative and the corpus score is the mean of the per-image scores. Equal whenever no cosine is < 0.
* Prompts longer than CLIP's 77-token context are truncated by the tokenizer, which keeps the
  end-of-text token (where CLIP pools), as SDXL's own text encoders see the prompt. torchmetrics slices
  `input_ids[:, :77]`, dropping that token. Prompts this long are counted in the settings (`truncated`).

CLIP-I is DreamBooth's (Ruiz et al. 2023, Sec. 4.1): the mean cosine between the CLIP image embeddings of
generated and reference images, over all generated x reference pairs. The write-up's "CLIP score" was a
softmax over a single prompt (always 1.0) - nothing here normalises over a set of prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlgen.metrics.image._common import batches, pairwise_cosine, pooled


@dataclass
class ClipBundle:
    """A loaded CLIP model and processor, with where they came from (for `settings`)."""

    model: Any  # transformers.CLIPModel, eval mode
    processor: Any  # transformers.CLIPProcessor
    name: str
    source: str
    device: str = "cpu"

    @property
    def max_text_tokens(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)


def load_clip(ref: str, *, device: str = "cpu") -> ClipBundle:
    """`ref` is a local directory or a hub id (resolved through `vlgen.hub`, fails fast offline)."""
    from transformers import CLIPModel, CLIPProcessor

    from vlgen.hub import resolve_model

    resolved = resolve_model(ref, what="CLIP model")
    model = CLIPModel.from_pretrained(resolved.path, dtype=torch.float32).to(device).eval()
    processor = CLIPProcessor.from_pretrained(resolved.path)
    return ClipBundle(model, processor, ref, resolved.source, device)


@torch.inference_mode()
def clip_image_embeddings(clip: ClipBundle, images: Sequence[Any], *, batch_size: int = 16) -> torch.Tensor:
    """(N, D) projected CLIP image embeddings (not normalised) of PIL images."""
    out = []
    for batch in batches(images, batch_size):
        pixel_values = clip.processor(images=batch, return_tensors="pt")["pixel_values"].to(clip.device)
        out.append(pooled(clip.model.get_image_features(pixel_values=pixel_values)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, clip.model.config.projection_dim)


@torch.inference_mode()
def clip_text_embeddings(clip: ClipBundle, texts: Sequence[str], *, batch_size: int = 64) -> tuple[torch.Tensor, int]:
    """(N, D) projected CLIP text embeddings (not normalised), and how many texts were truncated."""
    tok = clip.processor.tokenizer
    max_len = clip.max_text_tokens
    truncated = sum(len(ids) > max_len for ids in tok(list(texts), truncation=False)["input_ids"])
    out = []
    for batch in batches(texts, batch_size):
        enc = tok(batch, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        feats = clip.model.get_text_features(
            input_ids=enc["input_ids"].to(clip.device), attention_mask=enc["attention_mask"].to(clip.device)
        )
        out.append(pooled(feats).float().cpu())
    emb = torch.cat(out) if out else torch.empty(0, clip.model.config.projection_dim)
    return emb, truncated


def clip_t_scores(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """(N,) per-image CLIP-T = 100 * max(cos(image_i, text_i), 0); rows pair up image i with its prompt i."""
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(f"{tuple(image_embeds.shape)} image vs {tuple(text_embeds.shape)} text embeddings")
    cos = torch.nn.functional.cosine_similarity(image_embeds.double(), text_embeds.double(), dim=-1)
    return 100.0 * cos.clamp_min(0.0)


def mean_pairwise_cosine(generated: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(N,) for each generated embedding, the mean cosine to all M reference embeddings.

    The mean of this vector is the mean over all N x M pairs (every row has M terms): CLIP-I and DINO.
    """
    if len(generated) == 0 or len(references) == 0:
        raise ValueError("need at least one generated and one reference embedding")
    return pairwise_cosine(generated, references).mean(dim=1)
