"""Validation that measures the result (`--validation-metrics`): the scores `vlgen evaluate images` gives, on the
validation images of a LoRA run, at every validation.

- CLIP-T: 100 * max(cos(image, prompt), 0) per image (torchmetrics' CLIPScore), mean over the images;
- CLIP-I, DINO: mean cosine between each validation image and every instance (training) image (DreamBooth's
  subject-fidelity metrics, Ruiz et al. 2023).
The models load once and the instance images are embedded once per run; each validation embeds only its few
new images.

`validate_and_score` is what a LoRA run does at each validation: images, with the EMA weights swapped in
(`ema_weights`) under --use-ema, their scores, and the best LoRA kept under --metric-for-best-model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlgen.t2i.lora_config import validation_metric_keys

if TYPE_CHECKING:
    from vlgen.t2i.lora_config import LoraTrainConfig
    from vlgen.t2i.lora_trainer import LoraTrainer


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


def score_images(trainer: LoraTrainer, paths: list[Path]) -> dict[str, float]:
    """--validation-metrics of validation images: CLIP-T against the prompt, CLIP-I and DINO against the
    instance images (vlgen.metrics.image, as `vlgen evaluate images` computes them). The scorer is built on the
    first call and kept on the trainer."""
    keys = validation_metric_keys(trainer.cfg)
    if not keys:
        return {}
    if getattr(trainer, "_scorer", None) is None:
        instance_paths = [e.path for e in trainer.instances]
        trainer._scorer = ValidationScorer(trainer.cfg, instance_paths, keys, str(trainer.acc.device))
    prompt = trainer.cfg.validation_prompt or trainer.cfg.instance_prompt
    return trainer._scorer(paths, prompt)


@contextlib.contextmanager
def ema_weights(trainer: LoraTrainer) -> Iterator[None]:
    """The EMA weights in the model inside (what users generate with), the raw ones restored after."""
    if trainer.ema is None:
        yield
        return
    params = list(trainer.trainable.parameters())
    trainer.ema.store(params)
    trainer.ema.copy_to(params)
    try:
        yield
    finally:
        trainer.ema.restore(params)


def validate_and_score(trainer: LoraTrainer, name: str, state: dict[str, Any]) -> dict[str, float]:
    """Validation images (with the EMA weights under --use-ema), their --validation-metrics scores, and the
    LoRA kept in OUT/best/ when --metric-for-best-model improved. Returns the scores for the history row."""
    with ema_weights(trainer):
        paths = trainer.validate(name)
        scores = score_images(trainer, paths) if paths else {}
        key = trainer.cfg.metric_for_best_model
        if key and key in scores and trainer.acc.is_main_process:
            best = state.get("best")
            if best is None or scores[key] > best["value"]:  # CLIP-T, CLIP-I, DINO: higher is better
                from vlgen.t2i.outputs import save_lora_files

                save_lora_files(trainer, trainer.out / "best")
                state["best"] = {"metric": key, "value": scores[key], "step": state["global_step"]}
    return scores
