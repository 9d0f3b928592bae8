"""Scores of a round trip, through vlgen.metrics' public functions.

prompts: each captioner's recovered captions against the prompts with the caption metric set of
         `vlgen evaluate captions` (one reference per item: the prompt), and CLIP-T of each generated image
         against its prompt (a property of the generation, so the same value under every captioner).
images:  each regeneration against its *own* original (pair i = source image i and the image generated
         from its caption), mean over pairs: CLIP-I and DINO embedding cosines, Gram style distance. This is
         not `vlgen evaluate images`' all-pairs mean, which would reward a captioner that makes every image
         look like the average image.

A metric that cannot run is null, with the reason in `settings["unavailable"][KEY]`: a model the user named
must load (its failure is an error), a default model that is not available here degrades to null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vlgen.errors import ModelNotAvailableError
from vlgen.roundtrip.config import (
    CAPTION_METRIC_GROUPS,
    CAPTION_METRIC_KEYS,
    PAIRED_IMAGE_KEYS,
    PROMPT_IMAGE_KEYS,
    RoundtripConfig,
)

T = TypeVar("T")
PAIRING = (
    "paired: each regeneration is scored against its own original (the source image it was captioned from), "
    "mean over pairs; not the all-pairs mean of `vlgen evaluate images`"
)


def _load(ref: Any, default: Any, loader: Callable[[Any], T], key: str, option: str, unavailable: dict) -> T | None:
    """Load the model the user named (errors propagate), or the default (unavailable -> None + reason)."""
    if ref is not None:
        return loader(ref)
    try:
        return loader(default)
    except ModelNotAvailableError as e:
        unavailable[key] = f"{e} (give {option})"
        return None


def prompt_scores(
    images: Sequence[Path], prompts: list[str], captions: dict[str, list[str]], cfg: RoundtripConfig, device: str
) -> tuple[dict[str, dict], dict[str, list[dict]], dict[str, Any]]:
    """({captioner: {METRIC: value}}, {captioner: per-item scores}, settings) for the prompts direction."""
    from vlgen.metrics import compute_caption_metrics
    from vlgen.metrics.image import compute_image_metrics
    from vlgen.report.images import ImageFiles

    references = [[p] for p in prompts]
    scores: dict[str, dict] = {}
    per_item: dict[str, list[dict]] = {}
    unavailable: dict[str, str] = {}
    settings: dict[str, Any] = {}  # how each metric was computed: the same for every captioner, kept once
    for ref, preds in captions.items():
        s = compute_caption_metrics(
            preds, references, metrics=CAPTION_METRIC_GROUPS, bertscore_model=cfg.bertscore_model, device=device,
            progress=True,
        )  # fmt: skip
        scores[ref] = {k: s.corpus.get(k) for k in CAPTION_METRIC_KEYS}
        per_item[ref] = [{k: v for k, v in row.items() if k in CAPTION_METRIC_KEYS} for row in s.per_item]
        for k in CAPTION_METRIC_KEYS:
            if s.corpus.get(k) is None and k in s.settings["unavailable"]:
                unavailable[k] = s.settings["unavailable"][k]
        settings.update({k: v for k, v in s.settings.items() if k not in ("unavailable", "metrics")})

    img = compute_image_metrics(
        ImageFiles(list(images)), prompts, None, metrics=PROMPT_IMAGE_KEYS, clip_model=cfg.clip_model, device=device
    )
    for k in PROMPT_IMAGE_KEYS:
        value = img.corpus.get(k)
        for ref in captions:
            scores[ref][k] = value
            for row, image_row in zip(per_item[ref], img.per_image, strict=True):
                if k in image_row:
                    row[k] = image_row[k]
        if value is None:
            unavailable[k] = img.settings["unavailable"].get(k, "not computed")
        else:
            settings[k] = {
                **img.settings[k],
                "note": "the generated image against its prompt: the same for every captioner",
            }
    return scores, per_item, {"metrics": settings, "unavailable": unavailable}


def paired_scores(
    originals: Sequence[Path], regenerated: dict[str, Sequence[Path]], cfg: RoundtripConfig, device: str
) -> tuple[dict[str, dict], dict[str, list[dict]], dict[str, Any]]:
    """({captioner: {CLIP-I, DINO, Gram}}, {captioner: per-pair scores}, settings) for the images direction."""
    import torch

    from vlgen.hub import DEFAULT_MODELS
    from vlgen.metrics.image import (
        clip_image_embeddings,
        dino_embeddings,
        gram_distance_matrix,
        load_clip,
        load_dino,
        load_vgg,
    )
    from vlgen.metrics.image.gram import gram_matrices
    from vlgen.report.images import ImageFiles

    unavailable: dict[str, str] = {}
    settings: dict[str, Any] = {}
    n = len(originals)
    scores = {ref: dict.fromkeys(PAIRED_IMAGE_KEYS) for ref in regenerated}
    per_item: dict[str, list[dict]] = {ref: [{} for _ in range(n)] for ref in regenerated}

    def paired_cosine(a: torch.Tensor, b: torch.Tensor) -> list[float]:
        # (N, D) x (N, D) -> (N,): row i of a against row i of b only, in float64.
        return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).tolist()

    def record(key: str, ref: str, values: list[float]) -> None:
        scores[ref][key] = float(sum(values) / len(values))
        for row, v in zip(per_item[ref], values, strict=True):
            row[key] = v

    clip = _load(cfg.clip_model, DEFAULT_MODELS["clip"], lambda r: load_clip(str(r), device=device), "CLIP-I",
                 "--clip-model", unavailable)  # fmt: skip
    if clip is not None:
        base = clip_image_embeddings(clip, ImageFiles(originals))  # (N, D)
        for ref, paths in regenerated.items():
            record("CLIP-I", ref, paired_cosine(clip_image_embeddings(clip, ImageFiles(paths)), base))
        settings["CLIP-I"] = {"model": clip.name, "source": clip.source, "pairs": n}
        del clip
    dino = _load(cfg.dino_model, DEFAULT_MODELS["dino"], lambda r: load_dino(str(r), device=device), "DINO",
                 "--dino-model", unavailable)  # fmt: skip
    if dino is not None:
        base = dino_embeddings(dino, ImageFiles(originals))
        for ref, paths in regenerated.items():
            record("DINO", ref, paired_cosine(dino_embeddings(dino, ImageFiles(paths)), base))
        settings["DINO"] = {"model": dino.name, "source": dino.source, "embedding": "[CLS]", "pairs": n}
        del dino
    vgg = _load(cfg.vgg_weights, None, lambda r: load_vgg(r, device=device), "Gram", "--vgg-weights", unavailable)
    if vgg is not None:

        def grams(paths: Sequence[Path]) -> list[list[torch.Tensor]]:
            # Per image, one (1, C_l, C_l) Gram matrix per style layer.
            files = ImageFiles(paths)
            return [gram_matrices(vgg, [files[i]]) for i in range(len(files))]

        base_grams = grams(originals)
        for ref, paths in regenerated.items():
            values = [float(gram_distance_matrix(g, b)[0, 0]) for g, b in zip(grams(paths), base_grams, strict=True)]
            record("Gram", ref, values)
        settings["Gram"] = {
            "weights": vgg.name,
            "source": vgg.source,
            "layers": list(vgg.layers),
            "image_size": vgg.image_size,
            "pairs": n,
        }
    return scores, per_item, {"pairing": PAIRING, "metrics": settings, "unavailable": unavailable}
