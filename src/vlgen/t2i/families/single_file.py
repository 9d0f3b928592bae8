"""Bases as users download them: one `.safetensors` file (kohya/A1111/ComfyUI layout) instead of a diffusers folder.

`--base model.safetensors` works wherever a base is taken (train lora, generate, serve, roundtrip). The file's
family is read from its keys with diffusers' own detector (`infer_diffusers_model_type`: "v1" -> sd15,
"xl_base" -> sdxl, "flux-dev"/"flux-schnell" -> flux) - without reading any weights (the key table is built
on the meta device). The file is then converted once, by the family pipeline's `from_single_file`, into a
diffusers folder cached under VLGEN_SINGLE_FILE_CACHE (default ~/.cache/vlgen/single_file/NAME-HASH), which
every later run reuses; the hash covers the file's path, size and modification time. What a single file
lacks (configs, tokenizers; Flux's text encoders and VAE) comes from the family's hub repo, resolved like
every model (the hub cache offline), or from `config` (a folder) in the Python API.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vlgen.errors import ConfigError

SUFFIXES = (".safetensors",)
DENOISER_ONLY = {"flux"}  # families whose single files (BFL's flux1-dev/schnell) hold the denoiser alone


def is_single_file(ref: str | os.PathLike) -> bool:
    path = Path(ref).expanduser()
    return path.suffix in SUFFIXES and path.is_file()


def checkpoint_keys(path: Path) -> dict:
    """{key: meta tensor of the stored shape}: what diffusers' detector reads, without loading the weights."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}  # noqa: SIM118


def single_file_model_type(path: Path) -> str:
    """diffusers' name of the checkpoint's model type ("v1", "xl_base", "flux-dev", ...)."""
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, infer_diffusers_model_type

    try:
        keys = checkpoint_keys(path)
    except Exception as e:  # safetensors' errors name no file
        raise ConfigError(f"--base {path}: not a readable safetensors file ({e})") from None
    model_type = infer_diffusers_model_type(keys)
    # "v1" is also the detector's answer for keys it does not know at all: only a file with SD 1.x's UNet is one
    if model_type == "v1" and CHECKPOINT_KEY_NAMES["v1"] not in keys:
        raise ConfigError(
            f"--base {path}: not a checkpoint vlgen recognises (no SD 1.5, SDXL or Flux keys such as "
            f"{CHECKPOINT_KEY_NAMES['v1']})"
        )
    return model_type


def single_file_family(path: Path):
    """(family, the hub repo whose configs complete the file) of a single-file checkpoint."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS

    from vlgen.t2i.families import FAMILIES, family_hint

    model_type = single_file_model_type(path)
    repo = DIFFUSERS_DEFAULT_PIPELINE_PATHS.get(model_type, {}).get("pretrained_model_name_or_path")
    family = family_hint(repo) if repo else None
    if family is None:
        raise ConfigError(
            f"--base {path}: a {model_type!r} checkpoint (diffusers' detection); vlgen trains "
            f"{', '.join(FAMILIES)} single files"
        )
    return family, repo


def cache_dir() -> Path:
    return Path(os.environ.get("VLGEN_SINGLE_FILE_CACHE", Path.home() / ".cache" / "vlgen" / "single_file"))


def converted_dir(path: Path) -> Path:
    st = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / f"{path.stem}-{digest}"


def resolve_single_file(path: str | os.PathLike, config: str | None = None) -> Path:
    """The diffusers folder of a single-file checkpoint, converted on first use (progress on stderr)."""
    import diffusers

    from vlgen.fileio import atomic_directory
    from vlgen.hub import resolve_model

    path = Path(path).expanduser()
    out = converted_dir(path)
    if (out / "model_index.json").is_file():
        return out
    family, repo = single_file_family(path)
    config_dir = resolve_model(config or repo, what=f"{family.name} configs for the single file", option="--base")
    pipeline = getattr(diffusers, family.pipeline_class)
    if family.name in DENOISER_ONLY:
        # diffusers' pipeline-level from_single_file refuses such a file: it looks for the text encoders' weights in
        # `config` under diffusers' file names only (SingleFileComponentError). Its documented way: the denoiser
        # from the file, every other part from the configs folder
        denoiser = getattr(diffusers, family.denoiser_class).from_single_file(
            str(path), config=str(config_dir.path), subfolder=family.denoiser_name
        )
        pipe = pipeline.from_pretrained(config_dir.path, **{family.denoiser_name: denoiser})
    else:
        pipe = pipeline.from_single_file(str(path), config=str(config_dir.path))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out) as tmp:
        pipe.save_pretrained(tmp)
    return out
