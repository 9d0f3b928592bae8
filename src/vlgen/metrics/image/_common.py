"""What the image metrics share: batching over a sequence of images, and pairwise cosine similarity."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch


def batches(items: Sequence[Any], batch_size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most `batch_size` items. Indexes one item at a time, so `items` may be a lazy
    sequence that decodes an image file on access (only one batch of pixels is ever held in memory)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield [items[i] for i in range(start, min(start + batch_size, len(items)))]


def pairwise_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, D) x (M, D) -> (N, M) cosine similarities, computed in float64 (means over many pairs stay exact)."""
    a = torch.nn.functional.normalize(a.double(), dim=-1)
    b = torch.nn.functional.normalize(b.double(), dim=-1)
    return a @ b.T


def pooled(output: Any) -> torch.Tensor:
    """`get_image_features`/`get_text_features` return a tensor in transformers 4 and a
    `BaseModelOutputWithPooling` (projected embedding in `pooler_output`) in transformers 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
