"""`create_captioner(name, **kw)` / `load_captioner(ref)`: one entry point for every captioner family.

A reference is a family name (`cnn-lstm`, `blip`, `vit-gpt2`: the family's published checkpoint), a hub
id, or a local directory; the family of a directory is read from its `config.json` (`model_type`). Any other
model type transformers' `AutoModelForImageTextToText` knows (Florence-2, Qwen2-VL ..., SmolVLM, BLIP-2, LLaVA)
is the vision-language family `vlm` (vlgen.captioning.vlm), which takes a prompt; `florence-2` names its default
checkpoint (florence-community/Florence-2-base) as a family name would. `check_trainable` says which of these
`vlgen train caption` fine-tunes (train_config.TRAINABLE_FAMILIES).
`caption(images, model=...)` and `caption_folder(inputs, out, model=...)` load one and use it in one call
(the Python counterparts of `vlgen caption`; exported as `vlgen.caption` / `vlgen.caption_folder`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vlgen.captioning.base import Captioner
from vlgen.captioning.blip import BlipCaptioner
from vlgen.captioning.cnn_lstm import MODEL_TYPE as CNN_LSTM_MODEL_TYPE
from vlgen.captioning.cnn_lstm import CnnLstmCaptioner
from vlgen.captioning.train_config import TRAINABLE_FAMILIES
from vlgen.captioning.vit_gpt2 import VitGpt2Captioner
from vlgen.captioning.vlm import FAMILY as VLM_FAMILY
from vlgen.captioning.vlm import VisionLanguageCaptioner, check_native, florence_remote_code_message, is_vlm_model_type
from vlgen.captioning.vlm_config import MODEL_ALIASES as VLM_ALIASES
from vlgen.captioning.vlm_config import TRAINABLE_MODEL_TYPES
from vlgen.captioning.wd_tagger import WdTaggerCaptioner, is_wd_tagger_config
from vlgen.captioning.wd_tagger_config import FAMILY as WD_TAGGER_FAMILY
from vlgen.captioning.wd_tagger_config import WD_TAGGER_REPOS
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.hub import DEFAULT_MODELS, resolve_model

if TYPE_CHECKING:
    from PIL import Image

    from vlgen.captioning.batch import CaptionSummary

CAPTIONERS: dict[str, type[Captioner]] = {
    "cnn-lstm": CnnLstmCaptioner,
    "blip": BlipCaptioner,
    "vit-gpt2": VitGpt2Captioner,
    WD_TAGGER_FAMILY: WdTaggerCaptioner,  # WD14 booru taggers (timm): SmilingWolf/wd-*-tagger-v3
    VLM_FAMILY: VisionLanguageCaptioner,  # any image-text-to-text checkpoint, by hub id or directory
}
# config.json model_type -> family
_MODEL_TYPES = {CNN_LSTM_MODEL_TYPE: "cnn-lstm", "blip": "blip", "vision-encoder-decoder": "vit-gpt2"}
# --dtype values -> torch dtypes (CPU runs fp32 unless asked; bf16/fp16 are for GPUs)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_dtype(dtype: str | torch.dtype | None, option: str = "--dtype") -> torch.dtype | None:
    """`fp32`/`bf16`/`fp16` (or a torch dtype) -> torch dtype; None stays None (the family's default, fp32)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"{option} {dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def family_of(ref: str | Path) -> str:
    """The captioner family of a name, hub id or directory."""
    ref = str(ref)
    if ref in CAPTIONERS and ref != VLM_FAMILY:
        return ref
    if ref == VLM_FAMILY:
        raise ConfigError("vlm is a family, not a model: give a hub id or directory (e.g. florence-community/"
                          "Florence-2-base, Qwen/Qwen2.5-VL-3B-Instruct)")  # fmt: skip
    if ref in VLM_ALIASES:  # florence-2: a vision-language checkpoint by a family-style name
        return VLM_FAMILY
    remote = florence_remote_code_message(ref)
    if remote is not None:  # refused before any download
        raise ModelNotAvailableError(remote)
    if ref in WD_TAGGER_REPOS:
        return WD_TAGGER_FAMILY
    for family, hub_id in DEFAULT_MODELS.items():
        if ref == hub_id and family in CAPTIONERS:
            return family
    config = _model_config(ref)
    model_type = config.get("model_type")
    if model_type in _MODEL_TYPES:
        return _MODEL_TYPES[model_type]
    if is_wd_tagger_config(config):  # timm's config.json (architecture, pretrained_cfg), no model_type
        return WD_TAGGER_FAMILY
    if is_vlm_model_type(model_type):
        check_native(ref, config)
        return VLM_FAMILY
    remote = " (its config.json names remote code, which vlgen never runs)" if "auto_map" in config else ""
    raise ModelNotAvailableError(
        f"captioner '{ref}': model_type {model_type!r} is not a captioner vlgen knows{remote} "
        f"({', '.join(sorted(_MODEL_TYPES))}, or an image-text-to-text model of transformers)"
    )


def _model_config(ref: str) -> dict:
    """The config.json of a captioner hub id or directory (resolved, downloaded when the hub allows)."""
    path = resolve_model(ref, what="captioner").path
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ModelNotAvailableError(f"captioner '{ref}': {cfg} is missing, so its family is unknown")
    try:
        config = json.loads(cfg.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelNotAvailableError(f"captioner '{ref}': {cfg} is not valid JSON ({e})") from None
    return config if isinstance(config, dict) else {}


def check_trainable(ref: str | Path, option: str = "--model") -> str:
    """The family of `ref` when `vlgen train caption` can train it; otherwise a one-line ConfigError naming what
    trains (`TRAINABLE_FAMILIES`). Vision-language checkpoints train when their model_type is Florence-2's."""
    ref = str(ref)
    family = family_of(ref)
    if family == VLM_FAMILY:
        model_type = VLM_ALIASES.get(ref) or _model_config(ref).get("model_type")
        if model_type in TRAINABLE_MODEL_TYPES:
            return family
        what = f"a {model_type} checkpoint (it captions, but vlgen does not fine-tune it)"
    elif family in TRAINABLE_FAMILIES:
        return family
    else:
        what = f"the {family} family"
    raise ConfigError(
        f"{option} {ref}: vlgen cannot train {what}; train caption trains {', '.join(TRAINABLE_FAMILIES)} "
        "(a family name, or a hub id or directory of one)"
    )


def load_captioner(
    ref: str | Path,
    device: str | torch.device = "cpu",
    *,
    fast_path: bool | None = None,
    dtype: str | torch.dtype | None = None,
    prompt: str | None = None,
) -> Captioner:
    """Load a pretrained/fine-tuned captioner: family name or `florence-2` (its default checkpoint), hub id or
    directory.

    The captioner's `generate(images, num_beams=..., max_new_tokens=...)` captions RGB PIL images, one
    string per image, in order. `fast_path` (BLIP, ViT-GPT2 and Florence-2; other models ignore it): False runs
    plain transformers' `generate` instead of vlgen's patched one (`vlgen.captioning.blip_fast`, `.vit_gpt2_fast`,
    `.florence_fast`; same captions); None: on unless the environment sets `VLGEN_BLIP_FAST_PATH=0` /
    `VLGEN_VIT_GPT2_FAST_PATH=0` / `VLGEN_FLORENCE_FAST_PATH=0`.
    `dtype`: fp32 (None), bf16 or fp16 (GPUs; not the CNN-LSTM). `prompt`: the vision-language family's default
    prompt (instruction or Florence-2 task token; None: the model type's default, see vlgen.captioning.vlm); the
    other families take none.

    Example::

        from PIL import Image
        import vlgen

        captioner = vlgen.load_captioner("Salesforce/blip-image-captioning-base")  # or "blip", "runs/blip/best"
        print(captioner.generate([Image.open("cat.jpg").convert("RGB")], num_beams=3, max_new_tokens=20))
    """
    family = family_of(ref)
    check_caption_options(family, dtype=dtype, prompt=prompt)
    cls = CAPTIONERS[family]
    if str(ref) in VLM_ALIASES:
        ref = DEFAULT_MODELS[str(ref)]  # florence-2 -> florence-community/Florence-2-base
    ref = None if str(ref) == family else ref
    dtype = parse_dtype(dtype)
    if cls in (BlipCaptioner, VitGpt2Captioner):
        return cls.load(ref, device=device, fast_path=fast_path, dtype=dtype)
    if cls is VisionLanguageCaptioner:
        return cls.load(ref, device=device, dtype=dtype, prompt=prompt, fast_path=fast_path)  # Florence-2's
    if cls is CnnLstmCaptioner:
        return cls.load(ref, device=device)
    return cls.load(ref, device=device, dtype=dtype)


def takes_prompt(captioner: Captioner | str) -> bool:
    """Whether a captioner (or family name) takes a prompt (`--caption-prompt`): the vision-language family."""
    family = captioner if isinstance(captioner, str) else captioner.family
    return family == VLM_FAMILY


def check_caption_options(
    family: str, *, dtype: str | torch.dtype | None = None, prompt: str | None = None, where: str = ""
) -> None:
    """ConfigError naming the option when `family` cannot take it (before any model loads)."""
    parse_dtype(dtype)
    if prompt is not None and not takes_prompt(family):
        raise ConfigError(
            f"--caption-prompt{where}: the {family} captioner takes no prompt; prompts are for vision-language "
            "captioners (Florence-2, Qwen2-VL ..., a hub id or directory)"
        )
    if family == "cnn-lstm" and parse_dtype(dtype) not in (None, torch.float32):
        raise ConfigError(f"--dtype {dtype}: the cnn-lstm captioner runs in fp32 only")


def load_captioner_with_tags(
    ref: str | Path,
    device: str | torch.device = "cpu",
    *,
    tags_with: str | Path | None = None,
    general_threshold: float | None = None,
    character_threshold: float | None = None,
    **load_kwargs: Any,
) -> Captioner:
    """`load_captioner(ref, device, **load_kwargs)`, then with `tags_with` (a WD tagger, `--tags-with`) each
    caption is followed by that tagger's tags: "CAPTION, TAGS" (`vlgen.captioning.wd_tagger.with_tags`).
    `general_threshold`/`character_threshold` (None: 0.35/0.85) set the WD tagger's, whichever of the two it is;
    given without a WD tagger they are a ConfigError, raised before any model loads."""
    from vlgen.captioning.wd_tagger import check_tagger_options, set_thresholds, with_tags

    families = [family_of(ref)] + ([family_of(tags_with)] if tags_with is not None else [])
    check_tagger_options(families, general_threshold, character_threshold)
    captioner = load_captioner(ref, device=device, **load_kwargs)
    if tags_with is not None:
        captioner = with_tags(captioner, load_captioner(tags_with, device=device))
    set_thresholds(captioner, general_threshold, character_threshold)
    return captioner


def create_captioner(name: str, **kwargs) -> Captioner:
    """Registry entry point: `create_captioner("cnn-lstm", captions=[...], encoder="resnet50")` builds a new
    CNN-LSTM; for the pretrained families (and any path/hub id) it loads, with `device=` accepted."""
    if name == "cnn-lstm":
        if "captions" not in kwargs:
            raise ConfigError("a new CNN-LSTM needs the training captions to build its vocabulary (captions=...)")
        return CnnLstmCaptioner.create(**kwargs)
    if kwargs.keys() - {"device"}:
        raise ConfigError(f"unexpected options for {name}: {', '.join(sorted(kwargs.keys() - {'device'}))}")
    return load_captioner(name, device=kwargs.get("device", "cpu"))


def _device(device: str | torch.device | None) -> str | torch.device:
    """None: cuda when available, as `vlgen caption`."""
    return device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")


def caption(
    images: Sequence[Image.Image | str | os.PathLike],
    model: str | os.PathLike | Captioner = "blip",
    *,
    num_beams: int = 1,
    max_new_tokens: int = 30,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    caption_prompt: str | None = None,
    dtype: str | torch.dtype | None = None,
    **generate_kwargs: Any,
) -> list[str]:
    """One caption per image, in order: load `model` (family name, hub id or directory, as `vlgen caption
    --model`; or an already loaded `Captioner`) and caption `images` in batches.

    `images` are PIL images (any mode: converted to RGB as files are, alpha on white) or image paths (read with
    `vlgen.data.load_image`, as `vlgen caption` reads them, so a path gets the caption the CLI gives it); one
    image or path alone is a list of one.
    `num_beams`, `max_new_tokens` and any other keyword go to the model's `generate`; `batch_size` images per
    forward pass (default: 32 // num_beams, as `vlgen caption`); `device` None: cuda when available.
    `caption_prompt` (vision-language captioners: the instruction or Florence-2 task token; None: the model's
    default) and `dtype` (fp32/bf16/fp16, when `model` is loaded here) are `vlgen caption`'s options.

    Example::

        from PIL import Image
        import vlgen

        captions = vlgen.caption([Image.open("cat.jpg"), "dog.png"], model="blip", num_beams=3)
        print(captions)  # ['a cat sitting on a bed', 'a dog running on the grass']
    """
    from PIL import Image

    from vlgen.captioning.batch import resolve_batch_size
    from vlgen.data.images import load_image, to_rgb

    if num_beams < 1 or max_new_tokens < 1:
        raise ConfigError(f"num_beams and max_new_tokens must be at least 1, got {num_beams} and {max_new_tokens}")
    size = resolve_batch_size(batch_size, num_beams)
    images = [images] if isinstance(images, (str, os.PathLike, Image.Image)) else list(images)
    if isinstance(model, Captioner):
        captioner = model
        check_caption_options(captioner.family, prompt=caption_prompt)
    else:
        captioner = load_captioner(model, device=_device(device), dtype=dtype, prompt=caption_prompt)
    if caption_prompt is not None:
        generate_kwargs["prompt"] = caption_prompt
    captions: list[str] = []
    for start in range(0, len(images), size):
        batch = [
            to_rgb(im) if isinstance(im, Image.Image) else load_image(im, input_size=captioner.input_size)
            for im in images[start : start + size]
        ]  # decoded one batch at a time: a long list of paths never sits in memory at once
        captions += captioner.generate(batch, num_beams=num_beams, max_new_tokens=max_new_tokens, **generate_kwargs)
    return captions


def caption_folder(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    model: str | os.PathLike | Captioner = "blip",
    *,
    split: str | None = None,
    num_beams: int = 1,
    max_new_tokens: int = 30,
    batch_size: int | None = None,
    on_error: str = "fail",
    device: str | torch.device | None = None,
    caption_prompt: str | None = None,
    dtype: str | torch.dtype | None = None,
) -> CaptionSummary:
    """`vlgen caption` in one process: caption image folders, dataset folders (`split=` picks one split) and
    image files into `out`, a JSONL file of `{"file_name", "caption"}` rows appended batch by batch.

    Called again with the same `out`, images already there are skipped (a stopped run resumes). A bad image
    raises `ImageLoadError` naming it, or with `on_error="skip"` is listed in `OUT.skipped.jsonl`. Returns
    the `CaptionSummary` (`captioned`, `already_done`, `skipped`, `truncated`). `out` is checked before the model
    loads. `caption_prompt` and `dtype` as in `caption`; a row whose caption hit `max_new_tokens` (vision-language
    captioners) has `"truncated": true`.

    Example::

        import json
        import vlgen

        summary = vlgen.caption_folder("photos/", "captions.jsonl", model="blip", num_beams=3)
        print(summary.captioned, summary.already_done)
        rows = [json.loads(line) for line in open("captions.jsonl")]  # {"file_name", "caption"}
    """
    from vlgen.captioning.batch import caption_images, collect_inputs, done_file_names
    from vlgen.fileio import check_output_file

    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be fail or skip, got {on_error!r}")
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    items = collect_inputs(paths, split=split)
    out = check_output_file(out, "out")
    done_file_names(out)  # a file that is not a caption file is refused before the model loads
    if isinstance(model, Captioner):
        captioner = model
        check_caption_options(captioner.family, prompt=caption_prompt)
    else:
        captioner = load_captioner(model, device=_device(device), dtype=dtype, prompt=caption_prompt)
    return caption_images(
        captioner, items, out, batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
        on_error=on_error, prompt=caption_prompt,
    )  # fmt: skip
