"""The DreamBooth training set: instance (and class) examples, their crops, and the latent/text caches.

With LoRA only the UNet's (and optionally the text encoders') adapters learn, so the VAE and - unless
`--train-text-encoder` - the text encoders give the same output for an image or prompt at every step.
We compute those once before the first step (`--cache-latents`, `--cache-text-embeddings`):
- latents: the VAE's posterior *parameters* (mean and log-variance, (1, 2C, h, w)) per image and flip,
  so every step still draws a fresh sample from them, exactly as without the cache (diffusers' script
  draws from `latent_dist` too). The crop is decided once per image (seeded); the flip per step.
- text: the family's conditioning per distinct prompt (SDXL: prompt_embeds (77, 2048) and pooled (1280);
  Flux: T5 embeddings (512, 4096) and CLIP pooled (768)).
Cached or not, a batch is bit-identical: the same generator draws the same numbers in the same order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from vlgen.data import IMAGE_EXTENSIONS, METADATA_NAME, load_image, load_records
from vlgen.data.records import check_inside
from vlgen.errors import ConfigError, DataError, VlgenError
from vlgen.t2i.buckets import CropPlan, Size, make_buckets, nearest_bucket, plan_crop, render
from vlgen.t2i.families.base import Components
from vlgen.t2i.lora_config import LoraTrainConfig


class NonFiniteError(VlgenError):
    """NaN/inf in latents or loss: training would continue on garbage, so the run stops and says why."""


FP16_VAE_HINT = (
    "SDXL base's VAE overflows in fp16: use the fp16-fix VAE (--pretrained-vae-model-name-or-path "
    "madebyollin/sdxl-vae-fp16-fix) or run the VAE in fp32 (--mixed-precision no, or a VAE whose "
    "config has force_upcast: true)"
)


@dataclass
class Example:
    path: Path
    prompt: str
    original_size: Size  # (h, w) of the decoded file


def list_images(folder: Path) -> list[Path]:
    """The folder's image files; a link out of the folder is refused (DataError), as in dataset folders."""
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return [check_inside(folder, p) for p in found]


def _with_size(path: Path, prompt: str) -> Example:
    w, h = load_image(path).size  # decodes: a broken image fails here, before any training
    return Example(path, prompt, (h, w))


def instance_examples(cfg: LoraTrainConfig) -> list[Example]:
    """Every image of --instance-data-dir with its prompt: --instance-prompt, or with --caption-column
    the metadata.jsonl column (rows without a caption fall back to the instance prompt: never)."""
    root = Path(cfg.instance_data_dir)
    if cfg.caption_column:
        if not (root / METADATA_NAME).is_file():
            raise DataError(f"--caption-column {cfg.caption_column} needs a {METADATA_NAME}", path=str(root))
        records = load_records(root, caption_column=cfg.caption_column)
        pairs = [(Path(r.path), r.caption) for r in records]
    else:
        pairs = [(p, cfg.instance_prompt) for p in list_images(root)]
    if not pairs:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) to train on", path=str(root))
    return [_with_size(p, prompt) for p, prompt in pairs]


def class_examples(class_dir: Path, class_prompt: str, n: int) -> list[Example]:
    images = list_images(class_dir)[:n] if class_dir.is_dir() else []
    if len(images) < n:
        raise ConfigError(f"--class-data-dir {class_dir}: {len(images)} class images, need {n}")
    return [_with_size(p, class_prompt) for p in images]


class TrainingData:
    """Examples -> batches of (latents, prompt_embeds, pooled, time_ids), through the caches if enabled."""

    def __init__(
        self,
        cfg: LoraTrainConfig,
        parts: Components,
        instances: list[Example],
        classes: list[Example],
        device: torch.device,
    ) -> None:
        self.cfg, self.parts, self.device = cfg, parts, device
        self.instances, self.classes = instances, classes
        multiple = parts.family.min_resolution_multiple  # Flux: 16 (2x2 latent patches)
        self.buckets = (
            make_buckets(cfg.resolution, multiple=multiple) if cfg.aspect_ratio_buckets else [(cfg.resolution,) * 2]
        )
        self.bucket_of = [self.buckets.index(self._bucket(e)) for e in instances]
        self._plans: dict[tuple[int, bool, Size], CropPlan] = {}
        self._latents: dict[tuple[int, bool, Size, bool], torch.Tensor] = {}
        self._text: dict[str, dict[str, torch.Tensor]] = {}
        # VAE precision: fp32 whenever the VAE asks for it (SDXL base's sets force_upcast: its activations
        # exceed fp16's 65504 and decode to NaN/black); the fp16-fix VAE runs in the training dtype.
        self.vae_dtype = torch.float32 if parts.vae.config.force_upcast else parts.denoiser.dtype
        self.vae_config = parts.vae.config  # scaling_factor (0.13025 for SDXL) and shift_factor: unit-variance latents

    def _bucket(self, e: Example) -> Size:
        return nearest_bucket(e.original_size, self.buckets) if self.cfg.aspect_ratio_buckets else self.buckets[0]

    def plan(self, idx: int, is_class: bool, bucket: Size) -> CropPlan:
        key = (idx, is_class, bucket)
        if key not in self._plans:
            e = (self.classes if is_class else self.instances)[idx]
            # One seeded crop per (image, bucket): independent of data order, so resuming can't change it.
            rng = random.Random(f"vlgen-crop:{self.cfg.seed}:{int(is_class)}:{idx}:{bucket}")
            self._plans[key] = plan_crop(e.original_size, bucket, self.cfg.center_crop, rng)
        return self._plans[key]

    # -- latents
    @torch.no_grad()
    def _encode(self, idx: int, is_class: bool, bucket: Size, flipped: bool) -> torch.Tensor:
        """VAE posterior parameters (1, 2C, h/8, w/8): mean and log-variance of the C latent channels."""
        e = (self.classes if is_class else self.instances)[idx]
        pixels = render(load_image(e.path), self.plan(idx, is_class, bucket), flipped)  # (3, H, W)
        vae = self.parts.vae
        params = vae.encode(pixels[None].to(self.device, self.vae_dtype)).latent_dist.parameters.float()
        if not torch.isfinite(params).all():
            raise NonFiniteError(
                f"the VAE returned NaN/inf latents for {e.path} (VAE in {self.vae_dtype}). {FP16_VAE_HINT}"
            )
        return params

    def latent_params(self, idx: int, is_class: bool, bucket: Size, flipped: bool) -> torch.Tensor:
        key = (idx, is_class, bucket, flipped)
        if key in self._latents:
            return self._latents[key]
        params = self._encode(*key)
        if self.cfg.cache_latents:
            self._latents[key] = params
        return params

    def fill_caches(self) -> None:
        """Compute every latent and prompt embedding training can ask for, once, before step 1."""
        flips = (False, True) if self.cfg.random_flip else (False,)
        if self.cfg.cache_latents:
            for i in range(len(self.instances)):
                for f in flips:
                    self.latent_params(i, False, self.buckets[self.bucket_of[i]], f)
            used = sorted(set(self.bucket_of))
            for c in range(len(self.classes)):
                for b in used:
                    for f in flips:
                        self.latent_params(c, True, self.buckets[b], f)
        if self.caches_text:
            prompts = list(dict.fromkeys(e.prompt for e in self.instances + self.classes))
            if self.cfg.caption_dropout_rate > 0:
                prompts.append("")  # --caption-dropout-rate trains on the empty prompt
            with torch.no_grad():
                for i in range(0, len(prompts), 8):
                    chunk = prompts[i : i + 8]
                    family = self.parts.family
                    ids = family.tokenize(self.parts.tokenizers, chunk, self.cfg)
                    cond = family.encode(self.parts.text_encoders, ids)
                    for j, p in enumerate(chunk):
                        self._text[p] = {k: v[j] for k, v in cond.items()}

    @property
    def caches_text(self) -> bool:
        return self.cfg.cache_text_embeddings and not self.cfg.train_text_encoder

    # -- batches
    def batch(self, ids: list[int], g: torch.Generator) -> dict[str, torch.Tensor]:
        """Instance examples `ids` (one bucket), plus their paired class examples with prior preservation.

        Random draws, in this order, from `g` (a per-step generator): flips (B,), then each latent sample, then
        (with --caption-dropout-rate) which prompts become "".
        """
        bucket = self.buckets[self.bucket_of[ids[0]]]
        items = [(i, False) for i in ids]
        if self.classes:  # DreamBooth pairs instance i with class image i mod n (as diffusers' script)
            items += [(i % len(self.classes), True) for i in ids]
        n = len(items)
        flipped = (torch.rand(n, generator=g) < 0.5).tolist() if self.cfg.random_flip else [False] * n
        latents, time_ids, prompts = [], [], []
        for (idx, is_class), f in zip(items, flipped, strict=True):
            params = self.latent_params(idx, is_class, bucket, f)  # (1, 2C, h, w)
            mean, logvar = params.chunk(2, dim=1)
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))  # as DiagonalGaussianDistribution
            eps = torch.randn(mean.shape, generator=g).to(mean.device)
            latents.append(mean + std * eps)
            time_ids.append(self.plan(idx, is_class, bucket).time_ids(f))
            prompts.append((self.classes if is_class else self.instances)[idx].prompt)
        if self.cfg.caption_dropout_rate > 0:  # drawn last, so runs without it draw exactly as before
            dropped = (torch.rand(n, generator=g) < self.cfg.caption_dropout_rate).tolist()
            prompts = ["" if d else p for p, d in zip(prompts, dropped, strict=True)]
        out = {
            "latents": self.parts.family.latents_from_vae(torch.cat(latents), self.vae_config),  # (n, C, h, w)
            "time_ids": torch.tensor(time_ids, dtype=torch.float32, device=self.device),  # (n, 6)
        }
        if self.caches_text:
            out["cond"] = {k: torch.stack([self._text[p][k] for p in prompts]) for k in self._text[prompts[0]]}
        else:  # encoded in the step (maybe with grad)
            out["input_ids"] = self.parts.family.tokenize(self.parts.tokenizers, prompts, self.cfg)
        return out
