"""Image geometry for SDXL training: aspect-ratio buckets, resize + crop + flip, and the size/crop
conditioning SDXL was trained with (Podell et al. 2023, sec. 2.2: "micro-conditioning").

SDXL's UNet is told three things about every training image: its `original_size` (before any
resizing), the `crops_coords_top_left` of the crop that was taken, and the `target_size` it was
trained at. At inference the pipeline passes (1024, 1024), (0, 0), (1024, 1024) - "an uncropped image
that was already this size". So the ids we pass in training must describe what was *actually* done to
each image; otherwise the model learns the style together with wrong geometry.

Everything here is pure (PIL + torch on CPU), so it is unit-tested without a model.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

Size = tuple[int, int]  # (height, width), the order SDXL's time ids use


@dataclass(frozen=True)
class CropPlan:
    """How one image becomes a `target_size` training image (decided once per image, seeded)."""

    original_size: Size  # (h, w) of the decoded file
    resized_size: Size  # (h, w) after resizing so the image covers target_size
    top_left: Size  # (top, left) of the crop in the resized image
    target_size: Size  # (h, w): the bucket

    def crops_coords_top_left(self, flipped: bool) -> Size:
        """Crop origin as seen in the image the model saw. Flipping the crop equals cropping the flipped
        image at the mirrored left edge (diffusers' script flips first, then crops: same ids)."""
        top, left = self.top_left
        if flipped:
            left = self.resized_size[1] - left - self.target_size[1]
        return top, left

    def time_ids(self, flipped: bool) -> list[int]:
        """SDXL's 6 `add_time_ids`: original_size + crops_coords_top_left + target_size."""
        return [*self.original_size, *self.crops_coords_top_left(flipped), *self.target_size]


def bucket_step(resolution: int, multiple: int = 8) -> int:
    """Side lengths are multiples of this: 64 at 1024 px (kohya's default), never below `multiple` - the VAE's 8,
    or 16 for Flux, which packs 2x2 latents - and always a multiple of it."""
    return max(multiple, (resolution // 16) // multiple * multiple)


def make_buckets(resolution: int, max_aspect: float = 2.0, multiple: int = 8) -> list[Size]:
    """(h, w) sizes with about `resolution**2` pixels (never more), sides multiples of `bucket_step`,
    aspect ratio at most `max_aspect`. Always contains (resolution, resolution)."""
    step = bucket_step(resolution, multiple)
    area = resolution * resolution
    sizes = {(resolution, resolution)}
    for w in range(step, 2 * resolution + 1, step):
        h = (area // w) // step * step
        if h >= step and max(w, h) / min(w, h) <= max_aspect:
            sizes.add((h, w))
    return sorted(sizes, key=lambda s: s[1] / s[0])


def nearest_bucket(size: Size, buckets: list[Size]) -> Size:
    """The bucket whose aspect ratio is closest (in log space, so 2:1 and 1:2 are equally far from 1:1)."""
    aspect = math.log(size[1] / size[0])
    return min(buckets, key=lambda b: (abs(math.log(b[1] / b[0]) - aspect), -b[0] * b[1]))


def plan_crop(original_size: Size, target_size: Size, center_crop: bool, rng: random.Random) -> CropPlan:
    """Resize so the image covers `target_size` (the short side lands on it for square targets, as
    torchvision's Resize(resolution) in diffusers' script), then crop - centred or at a seeded offset."""
    h, w = original_size
    th, tw = target_size
    scale = max(th / h, tw / w)
    rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
    if center_crop:
        top, left = (rh - th) // 2, (rw - tw) // 2
    else:
        top, left = rng.randint(0, rh - th), rng.randint(0, rw - tw)
    return CropPlan(original_size, (rh, rw), (top, left), target_size)


def render(image: Image.Image, plan: CropPlan, flipped: bool) -> torch.Tensor:
    """The training tensor (3, th, tw) in [-1, 1], as the VAE expects."""
    rh, rw = plan.resized_size
    top, left = plan.top_left
    th, tw = plan.target_size
    im = image.resize((rw, rh), Image.Resampling.BILINEAR).crop((left, top, left + tw, top + th))
    if flipped:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1)  # (3, th, tw) in 0..255
    return x / 127.5 - 1.0


def bucketed_batches(buckets_of: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of batches: a permutation seeded by (seed, epoch), grouped so that each batch holds
    images of one bucket (they must stack), then the batch order shuffled with the same seed.

    With one bucket this is just the permutation cut into batches. Deterministic in (seed, epoch), so a
    resumed run sees exactly the batches the interrupted one would have.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(buckets_of), generator=g).tolist()
    groups: dict[int, list[int]] = {}
    for i in perm:
        groups.setdefault(buckets_of[i], []).append(i)
    batches = [idx[j : j + batch_size] for idx in groups.values() for j in range(0, len(idx), batch_size)]
    if len(groups) > 1:
        order = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[k] for k in order]
    return batches
