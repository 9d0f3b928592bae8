"""Gram-matrix style distance on VGG19 feature maps (Gatys et al., "Image Style Transfer Using Convolutional
Neural Networks", CVPR 2016).

For a feature map F of one image at one layer, reshaped to (C, H*W), the normalised Gram matrix is
``G = F F^T / (C * H * W)`` (the normalisation of PyTorch's neural-style tutorial, so values do not grow
with the layer's size). The distance of two images at a layer is the mean over the C x C entries of
``(G_a - G_b)^2``; over layers it is the plain mean (Gatys's equal weights w_l = 1/L). Lower = closer style.

Default layers: Gatys et al.'s style layers conv1_1, conv2_1, conv3_1, conv4_1, conv5_1, i.e. the
*rectified* responses of those convolutions - torchvision's names below are `relu1_1` ... `relu5_1`.
Any `convB_K` (pre-activation), `reluB_K` or `poolB` name of the network may be chosen instead.

Pixels: shorter side resized to `image_size` (default 256) and centre-cropped square, ImageNet mean/std -
the same size for every image so that batching and the per-layer H*W are identical across images.
The weights are torchvision's VGG19 IMAGENET1K_V1 (the Caffe-trained VGG19 that Gatys used, converted).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.metrics.image._common import batches
from vlgen.metrics.image_defaults import DEFAULT_GRAM_IMAGE_SIZE, VGG19_STYLE_LAYERS  # re-exported

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_VGG_CONFIG = "vgg.json"  # marks a directory written by vlgen.testing.vgg (`vlgen tiny vgg19 DIR`)
# Offline there are no ImageNet weights; a seeded random VGG19 still runs the metric (not a perceptual one).
OFFLINE_VGG_HINT = (
    "pass `--vgg-weights DIR` with a VGG19 built by `vlgen tiny vgg19 DIR` (random weights: it compares "
    "colour/texture statistics, but is not the perceptual style distance of ImageNet features)"
)


def vgg_layer_names(features: nn.Sequential) -> list[str]:
    """Caffe-style names for each module of a VGG `features` stack: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    names, block, k = [], 1, 0
    for module in features:
        if isinstance(module, nn.Conv2d):
            k += 1
            names.append(f"conv{block}_{k}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{k}")
        elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
            names.append(f"pool{block}")
            block, k = block + 1, 0
        else:
            names.append(f"{type(module).__name__.lower()}{block}_{k}")
    return names


@dataclass
class VggStyle:
    """A VGG feature stack cut after the last layer needed, and the indices whose outputs are Gram'd."""

    features: nn.Sequential
    layers: tuple[str, ...]
    indices: tuple[int, ...]
    name: str
    source: str
    image_size: int = DEFAULT_GRAM_IMAGE_SIZE
    device: str = "cpu"


def _features_from_state_dict(state: dict, where: str) -> nn.Sequential:
    from torchvision.models import vgg19

    model = vgg19(weights=None)
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    try:
        model.features.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ModelNotAvailableError(f"VGG weights {where} do not fit torchvision's vgg19 ({first})") from None
    return model.features


def _load_tiny(path: Path) -> nn.Sequential:
    from safetensors.torch import load_file
    from torchvision.models.vgg import make_layers

    cfg = json.loads((path / TINY_VGG_CONFIG).read_text())["cfg"]
    features = make_layers(cfg)
    features.load_state_dict(load_file(path / "model.safetensors"))
    return features


def load_vgg(
    ref: str | os.PathLike | None = None,
    *,
    layers: Sequence[str] = VGG19_STYLE_LAYERS,
    image_size: int = DEFAULT_GRAM_IMAGE_SIZE,
    device: str = "cpu",
) -> VggStyle:
    """VGG19 for Gram distances. `ref`: None = torchvision's ImageNet weights (torch hub cache, or downloaded
    when online); a file = a vgg19 state dict (tensors only, loaded with weights_only=True); a directory
    with `vgg.json` = a VGG from `vlgen.testing.vgg` (`vlgen tiny vgg19 DIR`, or a tiny one for tests)."""
    if ref is None:
        from torchvision.models import VGG19_Weights

        from vlgen.hub import resolve_torchvision_weights

        weights = VGG19_Weights.IMAGENET1K_V1
        state = resolve_torchvision_weights(weights, instead=OFFLINE_VGG_HINT)
        features = _features_from_state_dict(state, str(weights))
        name, source = "torchvision vgg19 IMAGENET1K_V1", "torch-hub-cache"
    else:
        path = Path(ref).expanduser()
        if path.is_dir() and (path / TINY_VGG_CONFIG).is_file():
            features = _load_tiny(path)
        elif path.is_file():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise ModelNotAvailableError(f"VGG weights '{path}' cannot be read as a state dict ({e})") from None
            features = _features_from_state_dict(state.get("state_dict", state), f"'{path}'")
        else:
            raise ModelNotAvailableError(
                f"VGG weights '{ref}': expected a vgg19 state-dict file or a directory with {TINY_VGG_CONFIG} "
                "(as `vlgen tiny vgg19 DIR` writes)"
            )
        name, source = str(ref), "local"
    names = vgg_layer_names(features)
    unknown = [layer for layer in layers if layer not in names]
    if unknown or not layers:
        raise ConfigError(f"unknown VGG layer(s) {', '.join(unknown) or '(none)'}; this network has {', '.join(names)}")
    indices = tuple(names.index(layer) for layer in layers)
    for m in features:
        if isinstance(m, nn.ReLU):
            m.inplace = False  # an in-place ReLU would overwrite a captured conv output
    features = features[: max(indices) + 1].to(device).eval().requires_grad_(False)
    return VggStyle(features, tuple(layers), indices, name, source, image_size, device)


def vgg_pixel_values(images: Sequence[Any], size: int) -> torch.Tensor:
    """(B, 3, size, size) ImageNet-normalised pixels: shorter side to `size`, centre crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    out = []
    for im in images:
        x = TF.pil_to_tensor(im.convert("RGB"))  # (3, H, W) uint8
        x = TF.resize(x, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        x = TF.center_crop(x, [size, size])
        out.append(TF.normalize(x.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD))
    return torch.stack(out)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): F F^T / (C * H * W), in float64."""
    b, c, h, w = features.shape
    f = features.double().reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


@torch.inference_mode()
def gram_matrices(vgg: VggStyle, images: Sequence[Any]) -> list[torch.Tensor]:
    """One (B, C_l, C_l) Gram tensor per layer of `vgg.layers`, for a list of PIL images (one batch)."""
    x = vgg_pixel_values(images, vgg.image_size).to(vgg.device)
    wanted = dict.fromkeys(vgg.indices)
    for i, module in enumerate(vgg.features):
        x = module(x)
        if i in wanted:
            wanted[i] = gram_matrix(x).cpu()
    return [wanted[i] for i in vgg.indices]


def gram_distance_matrix(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """(N, M): mean over layers of the mean squared difference between Gram matrices of a[n] and b[m].

    `a`, `b`: per layer, (N, C, C) and (M, C, C). Loops over b so memory stays O(N * C^2) per layer.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same, non-zero number of layers: {len(a)} vs {len(b)}")
    n, m = a[0].shape[0], b[0].shape[0]
    dist = torch.zeros(n, m, dtype=torch.float64)
    for ga, gb in zip(a, b, strict=True):
        for j in range(m):
            dist[:, j] += (ga.double() - gb[j].double()).pow(2).mean(dim=(-2, -1))
    return dist / len(a)


def gram_distances(
    vgg: VggStyle, generated: Sequence[Any], references: Sequence[Any], *, batch_size: int = 8
) -> torch.Tensor:
    """(N, M) Gram distances of each generated image to each reference image (generated streamed in batches)."""
    ref = [
        torch.cat(parts)
        for parts in zip(*(gram_matrices(vgg, b) for b in batches(references, batch_size)), strict=True)
    ]
    rows = [gram_distance_matrix(gram_matrices(vgg, b), ref) for b in batches(generated, batch_size)]
    return torch.cat(rows)
