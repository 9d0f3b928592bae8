"""One resolver for every model reference: a local directory or a Hugging Face hub id.

`resolve_model("Salesforce/blip-image-captioning-base")` returns a local directory that
`from_pretrained` reads. Order: an existing local path wins; otherwise the id is looked up in the local
hub cache; otherwise, if the hub is reachable, it is downloaded once. When neither works the resolver
fails at once with one line naming the model and what to do - one quick reachability probe, no retry
storm. The same function resolves the tiny test models (local directories), so tests exercise the path
real users take. Nothing here enables `trust_remote_code` or unpickles files: transformers/diffusers
read safetensors (or `.bin` with `torch.load(weights_only=True)`), and torchvision weights are loaded
with `weights_only=True` below.
"""

from __future__ import annotations

import os
import re
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from vlgen.errors import ModelNotAvailableError

# Hub ids the commands default to (the checkpoints of the two write-ups and DreamBooth's metrics).
DEFAULT_MODELS: dict[str, str] = {
    "blip": "Salesforce/blip-image-captioning-base",
    "vit-gpt2": "nlconnect/vit-gpt2-image-captioning",
    "florence-2": "florence-community/Florence-2-base",  # native transformers (not microsoft/'s remote code)
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-vae": "madebyollin/sdxl-vae-fp16-fix",
    "clip": "openai/clip-vit-large-patch14",
    "dino": "facebook/dino-vits16",
    "sentence-embedding": "sentence-transformers/all-MiniLM-L6-v2",
}

# Never fetch formats we don't read (and never pickled TF/Flax/ONNX variants or SDXL's single-file ckpt).
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = (
    "*.msgpack",
    "*.h5",
    "*.onnx",
    "*.onnx_data",
    "*.ot",
    "*.ckpt",
    "*.pb",
    "flax_model*",
    "tf_model*",
    "openvino*",
    "onnx/*",
    "sd_xl_*.safetensors",
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
_probe_cache: dict[str, bool] = {}


@dataclass(frozen=True)
class ResolvedModel:
    ref: str
    path: Path
    source: str  # "local" | "cache" | "download"


def hub_offline() -> bool:
    """True when the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub endpoint, cached for the process. Cheap and never retried."""
    endpoint = hub_endpoint()
    if endpoint not in _probe_cache:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection((url.hostname or "", port), timeout=timeout):
                _probe_cache[endpoint] = True
        except OSError:
            _probe_cache[endpoint] = False
    return _probe_cache[endpoint]


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def looks_like_hub_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and not ref.startswith((".", "~")) and ".." not in ref


def _missing_local_path(ref: str) -> str | None:
    """Why `ref` (which does not exist) is a mistyped local path rather than a hub id, or None.

    A path: it starts with / ./ ../ ~, has more than one separator, or its first part is a folder here
    (`runs/nonexistent` while `runs/` exists). The text names the deepest part that does exist.
    """
    p = Path(ref).expanduser()
    first = Path(ref).parts[0] if Path(ref).parts else ""
    pathlike = ref.startswith(("/", "./", "../", "~")) or ref.replace(os.sep, "/").count("/") > 1
    partly = len(Path(ref).parts) > 1 and Path(first).is_dir()
    if not (pathlike or partly):
        return None
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    if base.exists() and base != p and str(base) not in ("", ".", base.anchor):
        return f" ({str(base).rstrip(os.sep)}{os.sep} exists, but has no {p.relative_to(base).parts[0]!r})"
    return ""


# Which command-line option picks each kind of model in the running command, so that an offline failure can
# name it. Set by the CLI command (`name_model_options`); `vlgen.cli.main` runs every command in a copy of the
# context, so the names never leak into the next command run in the same process.
_MODEL_OPTIONS: ContextVar[dict[str, str]] = ContextVar("vlgen_model_options", default={})  # noqa: B039
# kind -> the words of `what` (the resolver's callers' description of the model) that make a model that kind
MODEL_KINDS: dict[str, tuple[str, ...]] = {
    "captioner": ("captioner",),
    "base": ("base model",),
    "vae": ("VAE",),
    "clip": ("CLIP",),
    "dino": ("DINO",),
    "bertscore": ("BERTScore",),
    "sentence_embedding": ("sentence-embedding",),
}


def name_model_options(**options: str) -> None:
    """Tell the resolver which option of the running command picks each kind of model (MODEL_KINDS), e.g.
    `name_model_options(base="--base", vae="--vae")`: a model missing offline is then reported with that option."""
    unknown = set(options) - set(MODEL_KINDS)
    if unknown:
        raise ValueError(f"unknown model kind(s) {sorted(unknown)}; known: {sorted(MODEL_KINDS)}")
    _MODEL_OPTIONS.set({**_MODEL_OPTIONS.get(), **options})


def option_for(what: str) -> str | None:
    """The option named by `name_model_options` for a model described as `what` ("BLIP captioner" -> captioner)."""
    named = _MODEL_OPTIONS.get()
    for kind, words in MODEL_KINDS.items():
        if kind in named and any(w in what for w in words):
            return named[kind]
    return None


def _unavailable(ref: str, what: str, why: str, option: str | None = None) -> ModelNotAvailableError:
    option = option or option_for(what)
    instead = f"pass {option} a local directory with the model" if option else "pass a local directory with the model"
    if option and what == "VAE":
        instead += f", or {option} none for the base model's own VAE"
    return ModelNotAvailableError(
        f"{what} '{ref}' is not in the local cache ({hub_cache_dir()}) and {why}. "
        f"Download it where there is internet (`hf download {ref}`) and copy the cache here, or {instead} instead."
    )


def resolve_model(
    ref: str | os.PathLike,
    *,
    what: str = "model",
    option: str | None = None,
    revision: str | None = None,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
) -> ResolvedModel:
    """Return a local directory for `ref` (a directory, or a hub id found in the cache or downloaded).

    `option`: the command-line option that picks this model (e.g. "--vae"), named when it cannot be had
    offline; default: the one `name_model_options` gave for this kind of model."""
    ref_str = os.fspath(ref)
    local = Path(ref_str).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelNotAvailableError(f"{what} '{ref_str}' is a file; expected a model directory")
        return ResolvedModel(ref_str, local.resolve(), "local")
    missing = _missing_local_path(ref_str)
    if missing is not None:  # a mistyped local path: never send the user to `hf download runs/nonexisting`
        raise ModelNotAvailableError(
            f"{what} '{ref_str}': no such directory{missing}; check the path (read as a local path, not a valid hub id)"
        )
    if not looks_like_hub_id(ref_str):
        raise ModelNotAvailableError(f"{what} '{ref_str}': no such directory, and it is not a valid hub id")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    ignore = list(DEFAULT_IGNORE_PATTERNS) + list(ignore_patterns or [])
    try:
        path = snapshot_download(
            ref_str,
            revision=revision,
            local_files_only=True,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore,
        )
        return ResolvedModel(ref_str, Path(path), "cache")
    except LocalEntryNotFoundError:
        pass
    except Exception as e:  # a corrupt cache entry: say so instead of a traceback
        raise ModelNotAvailableError(f"{what} '{ref_str}': the local cache entry is unusable ({e})") from None

    if hub_offline():
        raise _unavailable(ref_str, what, "the hub is switched off (HF_HUB_OFFLINE=1)", option)
    if not hub_reachable():
        raise _unavailable(ref_str, what, f"the hub ({hub_endpoint()}) cannot be reached", option)
    return _download(ref_str, what, revision, allow_patterns, ignore, option)


def _download(ref: str, what: str, revision, allow_patterns, ignore, option: str | None = None) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        path = snapshot_download(ref, revision=revision, allow_patterns=allow_patterns, ignore_patterns=ignore)
    except GatedRepoError:
        raise ModelNotAvailableError(
            f"{what} '{ref}' is gated: accept its licence on the hub and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotAvailableError(f"{what} '{ref}' does not exist on the hub (or is private)") from None
    except (HfHubHTTPError, OSError) as e:
        raise _unavailable(ref, what, f"downloading it failed ({type(e).__name__}: {e})", option) from None
    return ResolvedModel(ref, Path(path), "download")


def resolve_torchvision_weights(weights, *, instead: str) -> dict:
    """State dict for a torchvision `WeightsEnum` member (e.g. ResNet50_Weights.IMAGENET1K_V2).

    Looks in torch hub's checkpoint cache first; downloads only when online. Loaded with
    `weights_only=True` (tensors only, nothing unpickled). `instead`: what the user can do without these
    weights, named by the caller, who knows the option (e.g. "pass `--encoder-weights none`").
    """
    import torch

    url = weights.url
    filename = os.path.basename(urlparse(url).path)
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    path = ckpt_dir / filename
    name = f"torchvision weights {weights}"
    if not path.is_file():
        why = None
        if hub_offline():
            why = "offline mode is on (HF_HUB_OFFLINE=1)"
        else:
            host = urlparse(url)
            try:
                with socket.create_connection((host.hostname or "", 443), timeout=3.0):
                    pass
            except OSError:
                why = f"{host.hostname} cannot be reached"
        if why:
            raise ModelNotAvailableError(
                f"{name} are not in {ckpt_dir} and {why}. Download {url} to {path}, or {instead}."
            )
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    return torch.load(path, map_location="cpu", weights_only=True)
