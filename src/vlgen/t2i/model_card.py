"""The model card (README.md) written beside a trained LoRA, in the Hugging Face hub's format.

The yaml header carries what the hub indexes (base_model, instance_prompt, tags, widget); the body says
how to use the LoRA in diffusers and in ComfyUI/A1111, the trigger phrase, the training settings and
shows the sample grid.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vlgen.fileio import atomic_write_text
from vlgen.t2i.lora_config import LoraTrainConfig, unet_lora_layers
from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME

if TYPE_CHECKING:
    from vlgen.t2i.families.base import T2IFamily

_TITLES = {"sdxl": "SDXL", "sd15": "SD 1.5", "flux": "FLUX.1"}

SETTINGS = (
    "resolution", "train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler",
    "lr_warmup_steps", "snr_gamma", "noise_offset", "rank", "train_text_encoder", "with_prior_preservation",
    "class_prompt", "lora_layers", "mixed_precision", "gradient_checkpointing", "use_8bit_adam", "center_crop",
    "random_flip", "aspect_ratio_buckets", "seed",
)  # fmt: skip


def _as_used(ref: str) -> str:
    """A model reference as the run used it: a local folder as its absolute path (the card's code runs from
    anywhere), a hub id unchanged."""
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.is_dir() else ref


def _prompt(cfg: LoraTrainConfig) -> str:
    return cfg.validation_prompt or cfg.instance_prompt or "PROMPT"  # PROMPT: trained on per-image captions only


def _py(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid Python string literal


def _family(family: T2IFamily | None) -> T2IFamily:
    from vlgen.t2i.families import FAMILIES

    return family if family is not None else FAMILIES["sdxl"]


def _steps(family: T2IFamily | None, denoiser_config: Any) -> int:
    return _family(family).generation_defaults(denoiser_config).num_inference_steps


# The hub's licence ids of the bases vlgen knows (the card's `license:`); others: "other".
_LICENCES = {"sdxl": "openrail++", "sd15": "creativeml-openrail-m"}
_TAGS = {"sdxl": "stable-diffusion-xl", "sd15": "stable-diffusion", "flux": "flux"}


def usage_snippet(
    cfg: LoraTrainConfig, vae: str | None, family: T2IFamily | None = None, denoiser_config: Any = None
) -> str:
    """Python that loads the base, the VAE the run trained with and this LoRA, and generates one image.

    `vae`: the separate VAE the run used, None (or 'none') for the base's own - then the pipeline keeps its
    vae/ (loading a VAE from the base folder's root would fail: it has no config.json there)."""
    from vlgen.errors import VlgenError
    from vlgen.t2i.conditioning import resolve_vae, vae_subfolder

    vae = resolve_vae(vae)
    base = _as_used(cfg.pretrained_model_name_or_path)
    pipeline_class = _family(family).pipeline_class
    lines = [
        "import torch",
        f"from diffusers import {'AutoencoderKL, ' if vae else ''}{pipeline_class}",
        "",
        'device = "cuda" if torch.cuda.is_available() else "cpu"',
        'dtype = torch.float16 if device == "cuda" else torch.float32  # half precision on the GPU only',
    ]
    if vae:
        try:
            from vlgen.hub import resolve_model

            sub = vae_subfolder(resolve_model(vae, what="VAE").path)
        except VlgenError:  # not reachable now: write the call for a VAE folder, the usual layout
            sub = None
        where = f", subfolder={_py(sub)}" if sub else ""
        lines += [
            f"vae = AutoencoderKL.from_pretrained({_py(_as_used(vae))}{where}, torch_dtype=dtype)  # as in training",
            f"pipe = {pipeline_class}.from_pretrained({_py(base)}, vae=vae, torch_dtype=dtype).to(device)",
        ]
    else:
        lines += [
            "# the base's own VAE, as in training",
            f"pipe = {pipeline_class}.from_pretrained({_py(base)}, torch_dtype=dtype).to(device)",
        ]
    lora_dir = str(Path(cfg.output_dir).expanduser().resolve())
    lines += [
        f"pipe.load_lora_weights({_py(lora_dir)}, weight_name={_py(DIFFUSERS_WEIGHT_NAME)})",
        f"image = pipe({_py(_prompt(cfg))}, num_inference_steps={_steps(family, denoiser_config)}).images[0]",
        'image.save("lora_sample.png")',
    ]
    return "\n".join(lines)


def usage_command(cfg: LoraTrainConfig, vae: str | None) -> str:
    """The `vlgen generate` line for the same models."""
    from vlgen.t2i.conditioning import resolve_vae

    vae = resolve_vae(vae)
    args = ["vlgen", "generate", _prompt(cfg), "--base", _as_used(cfg.pretrained_model_name_or_path)]
    args += ["--vae", _as_used(vae)] if vae else []
    args += ["--lora", str(Path(cfg.output_dir).expanduser().resolve()), "--compare", "--out", "gen/"]
    return shlex.join(args)


def model_card(
    cfg: LoraTrainConfig,
    *,
    steps: int,
    vae: str | None,
    samples: str | None,
    sample_prompt: str | None,
    kohya: bool,
    final_loss: float | None,
    family: T2IFamily | None = None,
    denoiser_config: Any = None,
) -> str:
    """The README.md text. `samples` is the grid's file name relative to the card; `vae` the separate VAE the run
    trained with, None or 'none' for the base's own."""
    from vlgen.t2i.conditioning import resolve_vae

    vae = resolve_vae(vae)
    family = _family(family)
    trigger = cfg.instance_prompt
    # FLUX.1 [schnell]: Apache-2.0; [dev]: its own non-commercial licence (the hub's "other")
    schnell = family.name == "flux" and getattr(denoiser_config, "guidance_embeds", True) is False
    flux_licence = "apache-2.0" if schnell else "other"
    header: dict[str, Any] = {
        "base_model": cfg.pretrained_model_name_or_path,
        "library_name": "diffusers",
        "license": _LICENCES.get(family.name, flux_licence),
        "instance_prompt": trigger,
        "tags": [
            "text-to-image",
            _TAGS.get(family.name, family.name),
            "diffusers",
            "lora",
            "dreambooth",
            "template:sd-lora",
            "vlgen",
        ],
    }
    if samples and sample_prompt:
        header["widget"] = [{"text": sample_prompt, "output": {"url": samples}}]
    shown = {
        "lora_layers": ",".join(unet_lora_layers(cfg, family.default_lora_targets))
    }  # the resolved list, also when left at its default
    rows = "\n".join(f"| `{k}` | {shown.get(k, getattr(cfg, k))} |" for k in SETTINGS)
    kohya_text = (
        f"For ComfyUI, AUTOMATIC1111/Forge and other kohya-format tools use `{KOHYA_WEIGHT_NAME}` "
        "(keys `lora_unet_...` with `.alpha`): copy it to `models/loras/`."
        if kohya
        else "For ComfyUI/A1111, export kohya keys with `--export-format kohya` when training."
    )
    licence = family.licence_note(denoiser_config, cfg.pretrained_model_name_or_path)
    warnings = family.training_notes(denoiser_config, cfg.pretrained_model_name_or_path)
    notes = (f"- Licence: {licence}\n" if licence else "") + "".join(f"- **Note:** {w}\n" for w in warnings)
    loss_text = f" (final training loss {final_loss:.4f})" if final_loss is not None else ""
    grid = f"![samples]({samples})\n\n*{sample_prompt}* - seeds {cfg.seed}, {cfg.seed + 1}, ...\n" if samples else ""
    return f"""---
{yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip()}
---

# {_TITLES.get(family.name, family.name)} LoRA: {trigger or cfg.caption_column}

DreamBooth-LoRA weights for **{cfg.pretrained_model_name_or_path}**, trained with `vlgen train lora`
(diffusers + peft + accelerate) for {steps} steps{loss_text}.

- Base model: `{cfg.pretrained_model_name_or_path}`
- VAE used in training: `{vae or "the base model's own"}`
- Trigger: **{trigger}** {"(per-image captions from column `" + cfg.caption_column + "`)" if cfg.caption_column else ""}
{notes}
{grid}
## Use it

```python
{usage_snippet(cfg, vae, family, denoiser_config)}
```

or `{usage_command(cfg, vae)}`.
(The paths are this run's; after moving or uploading the LoRA, point them at the new place.)

{kohya_text}

## Training settings

| setting | value |
|---|---|
{rows}

The full resolved configuration is in `config.yaml`; the loss curve in `curves.png` (`history.csv`).
"""


def write_model_card(out_dir: Path, **kwargs) -> Path:
    return atomic_write_text(out_dir / "README.md", model_card(**kwargs))
