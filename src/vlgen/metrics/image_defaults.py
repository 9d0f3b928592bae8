"""The image metrics' defaults, written once: `vlgen.metrics.image` and `vlgen evaluate images` both read them.

A torch-free leaf (`vlgen.metrics.image` imports torch), so the CLI's `--help` shows them without loading torch.
"""

from __future__ import annotations

VGG19_STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # Gatys et al. 2016
DEFAULT_GRAM_IMAGE_SIZE = 256
DEFAULT_FID_MIN_IMAGES = 2048  # = the feature dimension: fewer samples cannot give a full-rank covariance
KID_MIN_IMAGES = 2  # the unbiased estimator needs pairs within each subset
DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000
DEFAULT_BATCH_SIZE = 16  # images per metric-model forward pass
DEFAULT_SEED = 0  # KID's subset sampling
