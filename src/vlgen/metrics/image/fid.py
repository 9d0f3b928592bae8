"""FID and KID on the standard Inception-v3 pool features (2048-d), as torch-fidelity / torchmetrics compute them.

Features: torch-fidelity's `FeatureExtractorInceptionV3` (the TF 2015-12-05 graph ported bit-exactly, uint8
input resized to 299 like TF1) - the network every published FID uses. torchvision's ImageNet Inception is a
*different* network and gives numbers that are not comparable, so it is never substituted silently.

FID (Heusel et al. 2017): ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2)``, float64, with
tr((S1 S2)^1/2) from the eigenvalues of S1 S2 (torch-fidelity's formulation).

Minimum size: FID is refused below `DEFAULT_FID_MIN_IMAGES` = 2048 images per set unless the caller lowers it.
With N <= 2048 samples the 2048 x 2048 covariance has rank <= N - 1, so the matrix square root is of a
singular matrix, and FID's bias grows like 1/N (Chong & Forsyth, "Effectively Unbiased FID", CVPR 2020):
numbers from a few hundred images are not comparable with anything, and from 6 images (the write-up) they
are meaningless. Use KID for small sets.

KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3``, averaged
over `subsets` random subsets of `subset_size` images per set (torch-fidelity: 100 x 1000). It is unbiased,
so it is usable on small sets; the subset size is clipped to the smaller set and reported.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.metrics.image._common import batches
from vlgen.metrics.image_defaults import (  # re-exported: written once, torch-free for the CLI
    DEFAULT_FID_MIN_IMAGES,
    DEFAULT_KID_SUBSET_SIZE,
    DEFAULT_KID_SUBSETS,
    KID_MIN_IMAGES,
)

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


class FidRefused(ConfigError):
    """Too few images for a meaningful FID (the message says how many are needed)."""


def check_fid_sizes(n_generated: int, n_references: int, min_images: int = DEFAULT_FID_MIN_IMAGES) -> None:
    """Raise `FidRefused` unless both sets have at least `min_images` images (and at least 2)."""
    need = max(min_images, 2)
    if n_generated < need or n_references < need:
        raise FidRefused(
            f"FID needs at least {need} images in each set; got {n_generated} generated and {n_references} "
            f"reference images. Below ~2048 the 2048-d Inception covariance is rank-deficient and FID is dominated "
            f"by its sample-size bias (use KID for small sets, or lower --fid-min-images knowing the value is "
            f"not comparable with published FIDs)"
        )


def frechet_distance(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """FID between two (N, D) feature sets (float64; N >= 2 each)."""
    f1 = features_1.double().cpu().numpy()
    f2 = features_2.double().cpu().numpy()
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    diff = mu1 - mu2
    # tr(sqrt(S1 S2)) = sum of sqrt of the eigenvalues of S1 S2 (real, >= 0 up to round-off for PSD S1, S2)
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).astype(np.complex128)).real)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float | None, coef0: float) -> np.ndarray:
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples from their kernel matrices (diagonals of K_XX, K_YY dropped)."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


@dataclass
class KidResult:
    mean: float
    std: float
    subsets: int
    subset_size: int


def kernel_inception_distance(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    *,
    subsets: int = DEFAULT_KID_SUBSETS,
    subset_size: int = DEFAULT_KID_SUBSET_SIZE,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> KidResult:
    """KID mean and std over `subsets` random subsets (without replacement) of min(subset_size, N1, N2) rows."""
    f1 = features_1.double().cpu().numpy()
    f2 = features_2.double().cpu().numpy()
    size = min(subset_size, len(f1), len(f2))
    if size < KID_MIN_IMAGES:
        raise ConfigError(f"KID needs at least {KID_MIN_IMAGES} images in each set; got {len(f1)} and {len(f2)}")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), size, replace=False)]
        y = f2[rng.choice(len(f2), size, replace=False)]
        mmds[i] = mmd2_unbiased(
            _poly_kernel(x, x, degree, gamma, coef0),
            _poly_kernel(x, y, degree, gamma, coef0),
            _poly_kernel(y, y, degree, gamma, coef0),
        )
    return KidResult(float(mmds.mean()), float(mmds.std()), subsets, size)


@dataclass
class InceptionBundle:
    model: Any  # torch_fidelity FeatureExtractorInceptionV3 returning ('2048',)
    name: str
    device: str = "cpu"


def _default_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(INCEPTION_URL).path)


def load_inception(weights: str | os.PathLike | None = None, *, device: str = "cpu") -> InceptionBundle:
    """torch-fidelity's Inception-v3. `weights`: a local weights file (torch-fidelity's
    weights-inception-2015-12-05-*.pth or pytorch-fid's pt_inception-2015-12-05-*.pth); None = torch hub's
    cache, downloading from GitHub when online. Raises ModelNotAvailableError saying what is missing."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise ModelNotAvailableError(
            "FID/KID need torch-fidelity's Inception-v3 (the network published FIDs use): pip install torch-fidelity"
        ) from None
    from vlgen.hub import hub_offline

    path: Path | None = Path(weights).expanduser() if weights is not None else None
    if path is None:
        cached = _default_inception_path()
        if cached.is_file():
            path = cached
        else:
            host = urlparse(INCEPTION_URL).hostname or ""
            why = "offline mode is on (HF_HUB_OFFLINE=1)" if hub_offline() else None
            if why is None:
                try:
                    with socket.create_connection((host, 443), timeout=3.0):
                        pass
                except OSError:
                    why = f"{host} cannot be reached"
            if why:
                raise ModelNotAvailableError(
                    f"Inception weights are not in {cached.parent} and {why}; download {INCEPTION_URL} "
                    f"and pass --inception-weights PATH"
                )
    if path is not None:
        if not path.is_file():
            raise ModelNotAvailableError(f"Inception weights '{path}': no such file")
        try:  # torch-fidelity itself unpickles with weights_only=False; refuse anything but tensors first
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ModelNotAvailableError(f"Inception weights '{path}' are not a plain state dict ({e})") from None
    try:
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    except RuntimeError as e:  # load_state_dict: wrong file
        first = str(e).splitlines()[0]
        raise ModelNotAvailableError(f"Inception weights '{path}' do not fit Inception-v3 ({first})") from None
    return InceptionBundle(model.to(device).eval(), str(path) if path else INCEPTION_URL, device)


@torch.inference_mode()
def inception_features(inception: InceptionBundle, images: Sequence[Any], *, batch_size: int = 16) -> torch.Tensor:
    """(N, 2048) pool features of PIL images (uint8 in, resized to 299 inside the network)."""
    import numpy as np

    out = []
    for batch in batches(images, batch_size):
        arrays = [
            torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1) for im in batch
        ]
        groups = [torch.stack(arrays)] if len({a.shape for a in arrays}) == 1 else [a[None] for a in arrays]
        for x in groups:
            out.append(inception.model(x.to(inception.device))[0].double().cpu())
    return torch.cat(out) if out else torch.empty(0, 2048, dtype=torch.float64)
