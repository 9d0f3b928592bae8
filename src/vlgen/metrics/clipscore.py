"""CLIPScore and RefCLIPScore of captions (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for
Image Captioning", Sec. 3), with the CLIP model `vlgen.metrics.image.clip` loads.

    CLIP-S(c, v)       = w * max(cos(E_c, E_v), 0),  w = 2.5, c embedded as "A photo depicts " + caption
    RefCLIP-S(c, R, v) = H-Mean(CLIP-S(c, v), max(max_{r in R} cos(E_c, E_r), 0))

References are embedded with the same prefix, as the authors' code does (jmhessel/clipscore embeds every text
through one dataset class that prefixes it). Corpus values are the means of the per-item values (their code's
`np.mean(per)`). The harmonic mean of 0 and anything is 0 (no division by zero).

Not the same as `CLIP-T` of `vlgen evaluate images` (`clip.clip_t_scores`, torchmetrics' scale): CLIP-T is
``100 * max(cos, 0)`` of the bare prompt - no prefix and another scale. Two deliberate details:

* the text-text term is clamped at 0 as in the paper's definition; the authors' code does not clamp it (equal
  whenever the best reference cosine is >= 0, which it is for real CLIP text embeddings in practice);
* captions longer than CLIP's window are truncated keeping the end-of-text token (where CLIP pools), as their
  `clip.tokenize(..., truncate=True)` does; how many were cut is in `settings["truncated_captions"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from vlgen.metrics.image.clip import ClipBundle, clip_image_embeddings, clip_text_embeddings, load_clip
from vlgen.metrics.text import METRIC_GROUP_KEYS

CLIPSCORE_KEYS = METRIC_GROUP_KEYS["clipscore"]  # ("CLIPScore", "RefCLIPScore")
CLIPSCORE_PREFIX = "A photo depicts "  # Hessel et al. 2021, Sec. 3 ("A photo depicts" + a space, as their code)
CLIPSCORE_W = 2.5  # Hessel et al. 2021, Sec. 3: stretches the usual cosines (~0-0.4) towards 0-1
DEFINITION = {
    "CLIPScore": f"{CLIPSCORE_W} * max(cos(image, '{CLIPSCORE_PREFIX}' + caption), 0) (Hessel et al. 2021)",
    "RefCLIPScore": "harmonic mean of CLIPScore and max(max over references of cos(caption, reference), 0), "
    "texts prefixed alike",
    "corpus": "mean over items",
}


@dataclass
class ClipScores:
    """`per_item[i]` has CLIPScore (and RefCLIPScore when references were given); `corpus` the means."""

    corpus: dict[str, float | None]
    per_item: list[dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.double(), dim=-1)


def clipscore_from_embeddings(image_embeds: torch.Tensor, caption_embeds: torch.Tensor) -> torch.Tensor:
    """(N,) CLIPScore = w * max(cos(image_i, caption_i), 0) from (N, D) embeddings of the *prefixed* captions."""
    if image_embeds.shape != caption_embeds.shape:
        raise ValueError(f"{tuple(image_embeds.shape)} image vs {tuple(caption_embeds.shape)} caption embeddings")
    cos = (_normalize(image_embeds) * _normalize(caption_embeds)).sum(dim=-1)
    return CLIPSCORE_W * cos.clamp_min(0.0)


def best_reference_cosine(caption_embeds: torch.Tensor, reference_embeds: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N,) max(max_r cos(caption_i, r), 0) over the (k_i, D) embeddings of item i's references."""
    if len(caption_embeds) != len(reference_embeds):
        raise ValueError(f"{len(caption_embeds)} captions but {len(reference_embeds)} reference sets")
    cap = _normalize(caption_embeds)
    best = [(_normalize(refs) @ cap[i]).max() for i, refs in enumerate(reference_embeds)]
    return torch.stack(best).clamp_min(0.0) if best else torch.empty(0, dtype=torch.float64)


def harmonic_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise 2ab / (a + b), 0 where a + b == 0 (both scores are >= 0)."""
    total = a + b
    return torch.where(total > 0, 2 * a * b / total.where(total > 0, torch.ones_like(total)), torch.zeros_like(total))


def compute_clipscore(
    images: Sequence[Any],
    captions: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
    *,
    clip_model: str | ClipBundle,
    device: str = "cpu",
    batch_size: int = 16,
    progress: bool = False,
) -> ClipScores:
    """CLIPScore of `captions[i]` for `images[i]` (PIL images; a lazy sequence is read one batch at a time), and
    RefCLIPScore against `references[i]` when `references` is given (every item needs one or more).

    `clip_model`: a folder, hub id (resolved offline-first by `vlgen.hub`) or a loaded `ClipBundle`.

    Example::

        from vlgen.metrics.clipscore import compute_clipscore

        s = compute_clipscore(
            [img], ["a dog on grass"], [["a dog running on the lawn"]], clip_model="openai/clip-vit-base-patch32"
        )
        s.corpus["CLIPScore"], s.per_item[0]["RefCLIPScore"]
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if references is not None and len(references) != len(captions):
        raise ValueError(f"{len(captions)} captions but {len(references)} reference lists")
    if references is not None and not all(references):
        raise ValueError(f"item {[bool(r) for r in references].index(False)}: no references for RefCLIPScore")
    clip = clip_model if isinstance(clip_model, ClipBundle) else load_clip(str(clip_model), device=device)
    starts: Any = range(0, len(captions), batch_size)
    if progress:
        from vlgen.progress import track

        starts = track(starts, f"CLIPScore ({batch_size} images a step)")
    image_emb, caption_emb, truncated = [], [], 0
    for start in starts:
        stop = min(start + batch_size, len(captions))
        image_emb.append(clip_image_embeddings(clip, [images[i] for i in range(start, stop)], batch_size=batch_size))
        emb, cut = clip_text_embeddings(clip, [CLIPSCORE_PREFIX + c for c in captions[start:stop]])
        caption_emb.append(emb)
        truncated += cut
    img = torch.cat(image_emb) if image_emb else torch.empty(0)
    cap = torch.cat(caption_emb) if caption_emb else torch.empty(0)
    scores = clipscore_from_embeddings(img, cap) if len(captions) else torch.empty(0, dtype=torch.float64)
    per_item: list[dict[str, float]] = [{"CLIPScore": float(s)} for s in scores]
    corpus: dict[str, float | None] = dict.fromkeys(CLIPSCORE_KEYS)
    corpus["CLIPScore"] = float(scores.mean()) if len(scores) else None
    if references is not None and len(captions):
        flat = [CLIPSCORE_PREFIX + r for refs in references for r in refs]
        ref_emb, cut = clip_text_embeddings(clip, flat)
        truncated += cut
        sizes = [len(refs) for refs in references]
        best = best_reference_cosine(cap, list(torch.split(ref_emb, sizes)))
        ref_scores = harmonic_mean(scores, best)
        for row, s in zip(per_item, ref_scores.tolist(), strict=True):
            row["RefCLIPScore"] = s
        corpus["RefCLIPScore"] = float(ref_scores.mean())
    settings = {
        "model": clip.name,
        "source": clip.source,
        "prefix": CLIPSCORE_PREFIX,
        "w": CLIPSCORE_W,
        "definition": DEFINITION,
        "max_tokens": clip.max_text_tokens,
        "truncated_captions": truncated,
    }
    return ClipScores(corpus=corpus, per_item=per_item, settings=settings)
