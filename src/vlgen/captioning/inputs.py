"""The captioning input pipeline: decode, reduce and preprocess batches ahead of the model (issue 19 item 3).

`decoded_batches(captioner, batches, num_workers=...)` yields one `DecodedBatch` per batch of
(file_name, path or shard sample), in the batches' order. Per batch, for each image `decode_image` (the one
decode `vlgen serve` uses too: a JPEG in draft mode only when it is at least twice the model input on both
sides), then the captioner's `image_transform()` (its processor: resize, rescale, normalise -> pixel_values)
over the batch's good images, so the model's process only runs the model.

- `num_workers=0`: all of that in the caller's thread when the batch is asked for (vlgen before issue 19).
- `num_workers=N`: a torch DataLoader's N worker processes take whole batches in turn and keep PREFETCH
  batches each ready (decoding the next batches while the model runs this one). Workers never touch the
  model: only the picklable transform travels (with fork, nothing is copied at all).

Bad images are as before: in "fail" mode a batch stops at its first bad image (the images before it are
still in the batch, the run fails after captioning them); in "skip" mode the batch lists them and goes on.
`default_num_workers()` is what `vlgen caption` uses without `--num-workers`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlgen.data.images import decode_image
from vlgen.data.shards import ShardSample
from vlgen.errors import ImageLoadError

PREFETCH = 2  # batches each worker keeps ready: one being captioned while the next waits
MAX_DEFAULT_WORKERS = 8  # a GPU captioning hundreds of images/s needs ~4-8 decoders (BLIP 384 px, ~15 ms/image)

Item = tuple[str, Path | ShardSample]


@dataclass
class BadImage:
    """An image that did not decode: its file_name, where it is, and `ImageLoadError`'s reason/path/line."""

    file_name: str
    ref: Path | ShardSample
    reason: str
    path: str | None
    line: int | None = None

    def error(self) -> ImageLoadError:
        return ImageLoadError(self.reason, path=self.path, line=self.line)


@dataclass
class DecodedBatch:
    """One batch, ready for the model: `inputs` (what `image_transform` made of the good images, or the
    images themselves; None when none decoded) for `file_names`, in order; `bad` the images that did not
    decode (in "fail" mode at most one: the batch's last); `size` how many items the batch had."""

    file_names: list[str]
    inputs: Any
    size: int
    bad: list[BadImage] = field(default_factory=list)

    def pin_memory(self) -> DecodedBatch:  # the DataLoader's pin_memory=True (CUDA) calls this
        if hasattr(self.inputs, "pin_memory"):
            self.inputs = self.inputs.pin_memory()
        return self


class ProcessorTransform:
    """images -> pixel_values (B, 3, H, W), float32 on the CPU, through a transformers image processor.
    Picklable (the processor is), so worker processes can run it; what BLIP's and ViT-GPT2's `generate` do."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, images: Sequence[Any]) -> Any:
        return self.image_processor(images=list(images), return_tensors="pt").pixel_values


def default_num_workers() -> int:
    """Half the CPUs (the model's own threads want the rest), at most MAX_DEFAULT_WORKERS, at least 1."""
    return max(1, min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 2) // 2))


def decode_item(ref: Path | ShardSample, input_size: tuple[int, int] | None) -> Any:
    """An input item's image through `decode_image`: a file, or a shard/parquet sample's bytes (errors name
    the shard and key)."""
    if isinstance(ref, ShardSample):
        return decode_image(ref.read_bytes(), ref.label, input_size=input_size)
    return decode_image(ref, input_size=input_size)


def decode_batch(
    batch: Sequence[Item],
    input_size: tuple[int, int] | None,
    transform: Callable[[list[Any]], Any] | None,
    on_error: str = "fail",
) -> DecodedBatch:
    """Decode one batch and transform its good images (see the module docstring for bad ones)."""
    names: list[str] = []
    images: list[Any] = []
    bad: list[BadImage] = []
    for name, ref in batch:
        try:
            images.append(decode_item(ref, input_size))
            names.append(name)
        except ImageLoadError as e:
            bad.append(BadImage(name, ref, e.reason, e.path, e.line))
            if on_error == "fail":
                break  # the rest of the batch is not decoded: the run stops after the images before it
    inputs = None
    if images:
        inputs = transform(images) if transform is not None else images
    return DecodedBatch(names, inputs, len(batch), bad)


class _Batches:
    """A map-style dataset of whole batches, for the DataLoader (batch_size=None: one item = one batch)."""

    def __init__(self, batches, input_size, transform, on_error) -> None:
        self.batches, self.input_size, self.transform, self.on_error = batches, input_size, transform, on_error

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> DecodedBatch:
        return decode_batch(self.batches[i], self.input_size, self.transform, self.on_error)


def _as_is(batch: DecodedBatch) -> DecodedBatch:
    return batch  # the DataLoader's collate: a DecodedBatch is already one batch (tensors in it are shared)


def decoded_batches(
    batches: Sequence[Sequence[Item]],
    *,
    input_size: tuple[int, int] | None,
    transform: Callable[[list[Any]], Any] | None,
    on_error: str = "fail",
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[DecodedBatch]:
    """`decode_batch` of every batch, in order; with `num_workers` > 0 in worker processes, ahead of the caller.

    A single batch is decoded in the caller's thread whatever `num_workers` says (nothing to overlap with).
    Stopping early (the caller raises or breaks) shuts the workers down.
    """
    if num_workers <= 0 or len(batches) <= 1:
        for batch in batches:
            yield decode_batch(batch, input_size, transform, on_error)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _Batches(batches, input_size, transform, on_error),
        batch_size=None,  # each dataset item is a whole batch
        shuffle=False,  # in order: batch i comes i-th, whichever worker made it
        num_workers=min(num_workers, len(batches)),
        prefetch_factor=PREFETCH,
        collate_fn=_as_is,
        pin_memory=pin_memory,
    )
    it = iter(loader)
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # now, not when the iterator is collected
        if shutdown is not None:
            shutdown()
