"""Aspect buckets, crops, flips and the SDXL size/crop conditioning they imply (pure, no model)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from vlgen.t2i.buckets import bucket_step, bucketed_batches, make_buckets, nearest_bucket, plan_crop, render


def test_buckets_keep_the_area_and_step():
    buckets = make_buckets(1024)
    assert (1024, 1024) in buckets and bucket_step(1024) == 64 and bucket_step(64) == 8
    for h, w in buckets:
        assert h % 64 == 0 and w % 64 == 0 and h * w <= 1024 * 1024 and max(h, w) / min(h, w) <= 2
    assert (768, 1344) in buckets or (768, 1280) in buckets  # a landscape bucket near SDXL's 1344x768
    assert nearest_bucket((600, 1200), buckets)[1] > nearest_bucket((600, 1200), buckets)[0]
    assert nearest_bucket((500, 500), buckets) == (1024, 1024)


def test_center_crop_ids_match_what_was_done():
    plan = plan_crop((300, 400), (256, 256), center_crop=True, rng=random.Random(0))
    assert plan.resized_size == (256, 341)  # the short side lands on 256
    assert plan.top_left == (0, 42)
    assert plan.time_ids(flipped=False) == [300, 400, 0, 42, 256, 256]
    # A flipped crop is the crop of the flipped image at the mirrored left edge: 341 - 42 - 256 = 43.
    assert plan.time_ids(flipped=True) == [300, 400, 0, 43, 256, 256]


def test_flip_then_crop_equals_crop_then_flip():
    """render() crops then flips; the ids claim "flipped image, cropped at the mirrored edge": check they agree."""
    im = Image.fromarray((torch.rand(30, 50, 3) * 255).byte().numpy())
    plan = plan_crop((30, 50), (16, 16), center_crop=False, rng=random.Random(3))
    top, left = plan.crops_coords_top_left(flipped=True)
    resized = im.resize(plan.resized_size[::-1], Image.Resampling.BILINEAR)
    flipped_first = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((left, top, left + 16, top + 16))
    a = render(im, plan, flipped=True)
    b = torch.from_numpy(np.asarray(flipped_first, dtype=np.float32).copy()).permute(2, 0, 1) / 127.5 - 1.0
    assert torch.equal(a, b)
    assert a.shape == (3, 16, 16) and a.min() >= -1.0 and a.max() <= 1.0


def test_random_crop_is_seeded():
    a = plan_crop((512, 900), (256, 256), center_crop=False, rng=random.Random("s"))
    b = plan_crop((512, 900), (256, 256), center_crop=False, rng=random.Random("s"))
    assert a == b and 0 <= a.top_left[1] <= a.resized_size[1] - 256


@pytest.mark.parametrize("buckets_of", [[0] * 7, [0, 1, 0, 1, 1, 0, 2]])
def test_epoch_batches_are_seeded_single_bucket_and_cover_everything(buckets_of):
    a = bucketed_batches(buckets_of, 2, seed=1, epoch=0)
    assert a == bucketed_batches(buckets_of, 2, seed=1, epoch=0)
    assert a != bucketed_batches(buckets_of, 2, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(7))
    assert all(len({buckets_of[i] for i in b}) == 1 for b in a)
