"""Image metrics for text-to-image runs: PIL images and prompts in, numbers out (never paths or argv).

    scores = compute_image_metrics(generated, prompts, references)   # lists of PIL images / strings
    scores.corpus["CLIP-T"], scores.per_image[0]["DINO"], scores.settings["CLIP-T"]["model"]

=========  ==========================================================================  ===============
key        definition                                                                  module
=========  ==========================================================================  ===============
CLIP-T     100 * max(cos(CLIP image, CLIP prompt), 0), mean over images (CLIPScore)   clip.py
CLIP-I     mean CLIP image-embedding cosine over generated x reference pairs           clip.py
DINO       the same with DINO ViT-S/16 [CLS] embeddings (DreamBooth)                   dino.py
Gram       mean squared difference of normalised VGG19 Gram matrices (Gatys style)    gram.py
FID        Frechet distance of Inception pool features (refused below 2048 images)    fid.py
KID        unbiased polynomial-kernel MMD^2 of the same features, over subsets         fid.py
=========  ==========================================================================  ===============

Every key of `IMAGE_METRIC_KEYS` is always present in `corpus`; a metric that could not run is None and
`settings["unavailable"][key]` says why (no prompts, no references, model not available offline, too few
images for FID, torch-fidelity missing). A model the caller names explicitly must load - its failure is
an error; only the *default* models degrade to None when they are not available.

`generated`/`references` may be any sequence of PIL images, including a lazy one that decodes on access:
images are read one batch at a time, once per metric family.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vlgen.errors import ConfigError, DataError, ModelNotAvailableError
from vlgen.metrics.image.clip import (
    ClipBundle,
    clip_image_embeddings,
    clip_t_scores,
    clip_text_embeddings,
    load_clip,
    mean_pairwise_cosine,
)
from vlgen.metrics.image.dino import DinoBundle, dino_embeddings, load_dino
from vlgen.metrics.image.fid import (
    FidRefused,
    check_fid_sizes,
    frechet_distance,
    inception_features,
    kernel_inception_distance,
    load_inception,
)
from vlgen.metrics.image.gram import (
    gram_distance_matrix,
    gram_distances,
    gram_matrix,
    load_vgg,
)
from vlgen.metrics.image_defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FID_MIN_IMAGES,
    DEFAULT_GRAM_IMAGE_SIZE,
    DEFAULT_KID_SUBSET_SIZE,
    DEFAULT_KID_SUBSETS,
    DEFAULT_SEED,
    KID_MIN_IMAGES,
    VGG19_STYLE_LAYERS,
)

IMAGE_METRIC_KEYS = ("CLIP-T", "CLIP-I", "DINO", "Gram", "FID", "KID")
PER_IMAGE_KEYS = ("CLIP-T", "CLIP-I", "DINO", "Gram")  # FID/KID are set statistics, no per-image value
# Higher is better for CLIP-T, CLIP-I, DINO; lower is better for Gram, FID, KID.
LOWER_IS_BETTER = frozenset({"Gram", "FID", "KID"})

T = TypeVar("T")


@dataclass
class ImageScores:
    """Set-level scores (`corpus[key]`), one dict per generated image (`per_image[i][key]`), and settings."""

    corpus: dict[str, float | None]
    per_image: list[dict[str, float]]
    n_generated: int
    n_references: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The `vlgen evaluate images --json` object."""
        return {
            **{k: self.corpus.get(k) for k in IMAGE_METRIC_KEYS},
            "n_generated": self.n_generated,
            "n_references": self.n_references,
            "settings": self.settings,
        }


def parse_image_metrics(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """'CLIP-T,DINO' or a list -> validated keys (case-insensitive); None/'all' -> every metric."""
    if spec is None or spec == "all":
        return IMAGE_METRIC_KEYS
    by_lower = {k.lower(): k for k in IMAGE_METRIC_KEYS}
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [s for s in items if s.lower() not in by_lower]
    if bad or not items:
        raise ConfigError(
            f"unknown image metric(s) {', '.join(bad) or '(none)'}; choose from {', '.join(IMAGE_METRIC_KEYS)}"
        )
    return tuple(dict.fromkeys(by_lower[s.lower()] for s in items))


def check_image_inputs(
    generated: Sequence[Any], prompts: Sequence[Any] | None, references: Sequence[Any] | None
) -> None:
    """DataError for empty sets and prompts that do not pair up one-to-one with the generated images."""
    if len(generated) == 0:
        raise DataError("nothing to score: no generated images")
    if references is not None and len(references) == 0:
        raise DataError("the reference set is empty")
    if prompts is not None:
        if len(prompts) != len(generated):
            raise DataError(f"{len(generated)} generated images but {len(prompts)} prompts")
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise DataError(f"image {i}: prompt {p!r} is not a non-empty string")


def _load_or_none(
    ref: str | os.PathLike | None, default: Any, loader: Callable[[Any], T], unavailable: dict, keys: Sequence[str]
) -> T | None:
    """Load `ref` (errors propagate: the user named it) or the default (unavailable -> None + reason)."""
    if ref is not None:
        return loader(ref)
    try:
        return loader(default)
    except ModelNotAvailableError as e:
        for k in keys:
            unavailable[k] = str(e)
        return None


@dataclass(frozen=True)
class _Run:
    """What every metric family sees: the two image sets, the prompts and compute_image_metrics' options."""

    generated: Sequence[Any]
    prompts: Sequence[str] | None
    references: Sequence[Any] | None
    device: str
    batch_size: int
    gram_layers: Sequence[str]
    gram_image_size: int
    fid_min_images: int
    kid_subsets: int
    kid_subset_size: int
    seed: int

    @property
    def n_gen(self) -> int:
        return len(self.generated)

    @property
    def n_ref(self) -> int:
        return len(self.references) if self.references is not None else 0

    def pairs(self) -> dict[str, int]:
        """The settings of a metric averaged over every generated x reference pair."""
        return {"n_generated": self.n_gen, "n_references": self.n_ref, "pairs": self.n_gen * self.n_ref}


# One metric's result: the set-level value, one value per generated image (None for set statistics), settings.
_Scored = tuple[float, list[float] | None, dict[str, Any]]


def _score_clip(clip: ClipBundle, run: _Run, keys: Sequence[str]) -> dict[str, _Scored]:
    gen_emb = clip_image_embeddings(clip, run.generated, batch_size=run.batch_size)  # one pass for both metrics
    info = {"model": clip.name, "source": clip.source}
    scored: dict[str, _Scored] = {}
    if "CLIP-T" in keys:
        text_emb, truncated = clip_text_embeddings(clip, list(run.prompts or []))
        scores = clip_t_scores(gen_emb, text_emb)
        scored["CLIP-T"] = (
            float(scores.mean()),
            scores.tolist(),
            {
                **info,
                "n_images": run.n_gen,
                "definition": "mean over images of 100 * max(cos(image, prompt), 0)",
                "max_tokens": clip.max_text_tokens,
                "truncated_prompts": truncated,
            },
        )
    if "CLIP-I" in keys:
        sims = mean_pairwise_cosine(gen_emb, clip_image_embeddings(clip, run.references, batch_size=run.batch_size))
        scored["CLIP-I"] = (float(sims.mean()), sims.tolist(), {**info, **run.pairs()})
    return scored


def _score_dino(dino: DinoBundle, run: _Run, keys: Sequence[str]) -> dict[str, _Scored]:
    sims = mean_pairwise_cosine(
        dino_embeddings(dino, run.generated, batch_size=run.batch_size),
        dino_embeddings(dino, run.references, batch_size=run.batch_size),
    )
    info = {"model": dino.name, "source": dino.source, "embedding": "last_hidden_state[:, 0] ([CLS])"}
    return {"DINO": (float(sims.mean()), sims.tolist(), {**info, **run.pairs()})}


def _score_gram(vgg: Any, run: _Run, keys: Sequence[str]) -> dict[str, _Scored]:
    # VGG feature maps at 256 px are large: at most 8 images per forward pass whatever --batch-size says.
    batch_size = max(1, min(run.batch_size, 8))
    dist = gram_distances(vgg, run.generated, run.references, batch_size=batch_size).mean(dim=1)
    info = {
        "weights": vgg.name,
        "source": vgg.source,
        "layers": list(vgg.layers),
        "image_size": vgg.image_size,
        "gram": "F F^T / (C*H*W); mean squared difference per layer, mean over layers",
    }
    return {"Gram": (float(dist.mean()), dist.tolist(), {**info, **run.pairs()})}


def _refuse_fid_kid(run: _Run, keys: Sequence[str]) -> dict[str, str]:
    """FID is refused on too few images before anything loads; KID runs on small sets (>= KID_MIN_IMAGES)."""
    refused: dict[str, str] = {}
    if "FID" in keys:
        try:
            check_fid_sizes(run.n_gen, run.n_ref, run.fid_min_images)
        except FidRefused as e:
            refused["FID"] = str(e)
    if "KID" in keys and min(run.n_gen, run.n_ref) < KID_MIN_IMAGES:
        refused["KID"] = f"KID needs at least {KID_MIN_IMAGES} images in each set; got {run.n_gen} and {run.n_ref}"
    return refused


def _score_fid_kid(inception: Any, run: _Run, keys: Sequence[str]) -> dict[str, _Scored]:
    f_gen = inception_features(inception, run.generated, batch_size=run.batch_size)
    f_ref = inception_features(inception, run.references, batch_size=run.batch_size)
    info = {"features": "torch-fidelity Inception-v3 pool3 (2048)", "weights": inception.name}
    sizes = {"n_generated": run.n_gen, "n_references": run.n_ref}
    scored: dict[str, _Scored] = {}
    if "FID" in keys:
        scored["FID"] = (frechet_distance(f_gen, f_ref), None, {**info, "min_images": run.fid_min_images, **sizes})
    if "KID" in keys:
        kid = kernel_inception_distance(
            f_gen, f_ref, subsets=run.kid_subsets, subset_size=run.kid_subset_size, seed=run.seed
        )
        settings = {
            **info,
            "std": kid.std,
            "subsets": kid.subsets,
            "subset_size": kid.subset_size,
            "kernel": "(x.y / d + 1)^3",
            "seed": run.seed,
            **sizes,
        }
        scored["KID"] = (kid.mean, None, settings)
    return scored


@dataclass(frozen=True)
class _Family:
    """Metrics that share one model: it is loaded once and each image set goes through it once."""

    keys: tuple[str, ...]
    model_option: str  # the compute_image_metrics argument naming the model (None = the default)
    default_model: str | None  # a `vlgen.hub.DEFAULT_MODELS` key; None = the loader's own default
    load: Callable[[Any, _Run], Any]
    score: Callable[[Any, _Run, Sequence[str]], dict[str, _Scored]]
    refuse: Callable[[_Run, Sequence[str]], dict[str, str]] = lambda run, keys: {}  # reasons to skip before loading


# In IMAGE_METRIC_KEYS order: it is the order of settings, per-image keys and load attempts.
_FAMILIES = (
    _Family(
        ("CLIP-T", "CLIP-I"), "clip_model", "clip", lambda ref, run: load_clip(str(ref), device=run.device), _score_clip
    ),
    _Family(("DINO",), "dino_model", "dino", lambda ref, run: load_dino(str(ref), device=run.device), _score_dino),
    _Family(
        ("Gram",),
        "vgg_weights",
        None,
        lambda ref, run: load_vgg(ref, layers=run.gram_layers, image_size=run.gram_image_size, device=run.device),
        _score_gram,
    ),
    _Family(
        ("FID", "KID"),
        "inception_weights",
        None,
        lambda ref, run: load_inception(ref, device=run.device),
        _score_fid_kid,
        _refuse_fid_kid,
    ),
)


def compute_image_metrics(
    generated: Sequence[Any],
    prompts: Sequence[str] | None = None,
    references: Sequence[Any] | None = None,
    *,
    metrics: Iterable[str] | str | None = None,
    clip_model: str | os.PathLike | None = None,
    dino_model: str | os.PathLike | None = None,
    vgg_weights: str | os.PathLike | None = None,
    gram_layers: Sequence[str] = VGG19_STYLE_LAYERS,
    gram_image_size: int = DEFAULT_GRAM_IMAGE_SIZE,
    inception_weights: str | os.PathLike | None = None,
    fid_min_images: int = DEFAULT_FID_MIN_IMAGES,
    kid_subsets: int = DEFAULT_KID_SUBSETS,
    kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE,
    seed: int = DEFAULT_SEED,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImageScores:
    """Score generated images against their prompts (CLIP-T) and a reference set (the rest).

    `prompts[i]` belongs to `generated[i]`; None skips CLIP-T, `references=None` skips the others (each
    with a reason in `settings["unavailable"]`). Models: None = the default (`vlgen.hub.DEFAULT_MODELS`,
    torchvision's VGG19, torch-fidelity's Inception), which may be unavailable offline; a value given
    here must load or an error is raised.

    Example::

        from pathlib import Path
        from PIL import Image
        import vlgen

        generated = [Image.open(p) for p in sorted(Path("gen").glob("*.png"))]
        references = [Image.open(p) for p in sorted(Path("data/3d_icons").rglob("*.png"))]
        prompts = ["a red circle", "a blue square"]  # prompts[i] belongs to generated[i]
        scores = vlgen.compute_image_metrics(generated, prompts, references, metrics="CLIP-T,CLIP-I,DINO")
        print(scores.corpus["CLIP-T"], scores.per_image[0]["DINO"], scores.settings["unavailable"])
    """
    from vlgen.hub import DEFAULT_MODELS

    wanted = parse_image_metrics(metrics)
    check_image_inputs(generated, prompts, references)
    run = _Run(
        generated, prompts, references, device, batch_size, gram_layers, gram_image_size, fid_min_images,
        kid_subsets, kid_subset_size, seed,
    )  # fmt: skip
    model_refs = {
        "clip_model": clip_model,
        "dino_model": dino_model,
        "vgg_weights": vgg_weights,
        "inception_weights": inception_weights,
    }
    corpus: dict[str, float | None] = dict.fromkeys(IMAGE_METRIC_KEYS)
    per_image: list[dict[str, float]] = [{} for _ in range(run.n_gen)]
    unavailable: dict[str, str] = {}
    settings: dict[str, Any] = {"metrics": list(wanted), "device": device, "unavailable": unavailable}
    for k in IMAGE_METRIC_KEYS:
        if k not in wanted:
            unavailable[k] = "not requested (--metrics)"
    if prompts is None and "CLIP-T" in wanted:
        unavailable["CLIP-T"] = "no prompts: give --prompts FILE, --data DIR, or a metadata.jsonl in the image folder"
    if references is None:
        for k in ("CLIP-I", "DINO", "Gram", "FID", "KID"):
            if k in wanted:
                unavailable[k] = "no reference images (--references DIR)"

    def todo(keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in unavailable]

    for family in _FAMILIES:
        if not todo(family.keys):
            continue
        unavailable.update(family.refuse(run, todo(family.keys)))
        keys = todo(family.keys)
        if not keys:
            continue
        default = DEFAULT_MODELS[family.default_model] if family.default_model else None
        model = _load_or_none(
            model_refs[family.model_option], default, lambda ref, f=family: f.load(ref, run), unavailable, keys
        )
        if model is None:
            continue
        for key, (value, values, key_settings) in family.score(model, run, keys).items():
            corpus[key] = value
            if values is not None:  # FID and KID are set statistics: no per-image value
                for row, v in zip(per_image, values, strict=True):
                    row[key] = v
            settings[key] = key_settings
    if "FID" in unavailable and "FID" in wanted and references is not None:
        settings.setdefault("FID", {"min_images": fid_min_images, "n_generated": run.n_gen, "n_references": run.n_ref})
    return ImageScores(corpus, per_image, run.n_gen, run.n_ref, settings)


__all__ = [
    "DEFAULT_FID_MIN_IMAGES",
    "DEFAULT_GRAM_IMAGE_SIZE",
    "IMAGE_METRIC_KEYS",
    "LOWER_IS_BETTER",
    "PER_IMAGE_KEYS",
    "VGG19_STYLE_LAYERS",
    "FidRefused",
    "ImageScores",
    "check_fid_sizes",
    "check_image_inputs",
    "clip_image_embeddings",
    "clip_t_scores",
    "clip_text_embeddings",
    "compute_image_metrics",
    "dino_embeddings",
    "frechet_distance",
    "gram_distance_matrix",
    "gram_distances",
    "gram_matrix",
    "inception_features",
    "kernel_inception_distance",
    "load_clip",
    "load_dino",
    "load_inception",
    "load_vgg",
    "mean_pairwise_cosine",
    "parse_image_metrics",
]
