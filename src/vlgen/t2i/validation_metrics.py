"""Validation that measures the result (`--validation-metrics`): the scores `vlgen evaluate images` gives, on the
validation images of a LoRA run, at every validation.

- CLIP-T: 100 * max(cos(image, prompt), 0) per image (torchmetrics' CLIPScore), mean over the images;
- CLIP-I, DINO: mean cosine between each validation image and every instance (training) image (DreamBooth's
  subject-fidelity metrics, Ruiz et al. 2023).
The models load once and the instance images are embedded once per run; each validation embeds only its few
new images.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vlgen.t2i.lora_config import LoraTrainConfig


class ValidationScorer:
    def __init__(self, cfg: LoraTrainConfig, instance_paths: list[Path], keys: tuple[str, ...], device: str) -> None:
        from vlgen.data import load_image
        from vlgen.hub import DEFAULT_MODELS

        self.keys = keys
        refs = [load_image(p) for p in instance_paths]
        self.clip = self.dino = None
        if {"CLIP-T", "CLIP-I"} & set(keys):
            from vlgen.metrics.image.clip import clip_image_embeddings, load_clip

            self.clip = load_clip(cfg.clip_model or DEFAULT_MODELS["clip"], device=device)
            self.clip_refs = clip_image_embeddings(self.clip, refs)  # (M, D)
        if "DINO" in keys:
            from vlgen.metrics.image.dino import dino_embeddings, load_dino

            self.dino = load_dino(cfg.dino_model or DEFAULT_MODELS["dino"], device=device)
            self.dino_refs = dino_embeddings(self.dino, refs)  # (M, D)

    def __call__(self, paths: list[Path], prompt: str) -> dict[str, float]:
        from vlgen.data import load_image
        from vlgen.metrics.image.clip import (
            clip_image_embeddings,
            clip_t_scores,
            clip_text_embeddings,
            mean_pairwise_cosine,
        )

        images = [load_image(p) for p in paths]
        out: dict[str, float] = {}
        if self.clip is not None:
            gen = clip_image_embeddings(self.clip, images)  # (N, D)
            if "CLIP-T" in self.keys:
                text, _ = clip_text_embeddings(self.clip, [prompt] * len(images))
                out["CLIP-T"] = float(clip_t_scores(gen, text).mean())
            if "CLIP-I" in self.keys:
                out["CLIP-I"] = float(mean_pairwise_cosine(gen, self.clip_refs).mean())
        if self.dino is not None:
            from vlgen.metrics.image.dino import dino_embeddings

            out["DINO"] = float(mean_pairwise_cosine(dino_embeddings(self.dino, images), self.dino_refs).mean())
        return {k: out[k] for k in self.keys}
