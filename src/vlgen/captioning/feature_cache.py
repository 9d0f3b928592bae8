"""On-disk cache of frozen-encoder features, so epochs after the first never touch the CNN.

Keyed by what the features depend on: the images (path, size, mtime) and the encoder settings. Stored
as safetensors (`features`: (N, L, F) float32, rows in the order of `file_names`) plus a JSON sidecar.
Default location `$VLGEN_CACHE_DIR` or `~/.cache/vlgen/features`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vlgen.fileio import atomic_file, atomic_write_text
from vlgen.progress import track

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    root = os.environ.get("VLGEN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vlgen"
    )
    return Path(root) / "features"


def cache_key(paths: Sequence[Path], encoder_key: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "encoder": encoder_key}, sort_keys=True).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def cached_features(
    paths: Sequence[Path],
    encoder_key: dict,
    encode: Callable[[list[Path]], torch.Tensor],
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    description: str = "encoding images",
) -> tuple[torch.Tensor, bool]:
    """(N, L, F) features for `paths`, from the cache or computed with `encode(batch_of_paths)` and stored.

    Returns (features, hit). `encode` must be deterministic (eval mode, no augmentation).
    """
    from safetensors.torch import load_file, save_file

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(paths, encoder_key)
    file = cache / f"features-{key}.safetensors"
    if file.is_file():
        return load_file(str(file))["features"], True
    chunks = []
    batches = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
    for batch in track(batches, description):
        chunks.append(encode(batch).float().cpu())
    feats = torch.cat(chunks).contiguous()
    with atomic_file(file) as tmp:  # two runs sharing the cache each write their own temp file
        save_file({"features": feats}, str(tmp))
    atomic_write_text(
        file.with_suffix(".json"),
        json.dumps({"encoder": encoder_key, "n": len(paths), "shape": list(feats.shape), "first": str(paths[0])}),
    )
    return feats, False
