"""`LoraTrainConfig`: the options of `vlgen train lora` (no heavy imports, so the CLI starts fast).

Field names are the argument names of diffusers' `examples/dreambooth/train_dreambooth_lora_sdxl.py`
(`instance_prompt`, `snr_gamma`, `rank`, ...), so a user's diffusers command line carries over flag for
flag; `with_dataclass_options` turns `instance_prompt` into `--instance-prompt`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from vlgen.errors import ConfigError
from vlgen.hub import DEFAULT_MODELS

# diffusers' names, and the same with hyphens (the README's "cosine-with-restarts"), stored with underscores.
LrSchedulerName = Literal[
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
    "constant-with-warmup", "cosine-with-restarts",
]  # fmt: skip

# LoRA targets: the attention projections, as diffusers' SDXL DreamBooth script (and kohya's default
# "attention only" network) adapt them. Both the diffusers and the kohya key formats round-trip these.
UNET_TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")
TEXT_ENCODER_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")
# `--lora-layers` (diffusers' DreamBooth scripts' `--lora_layers`): comma-separated module names, each matching
# every UNet module whose dotted path ends with it, e.g. "to_k,to_q,to_v,to_out.0,conv1,conv2". Besides the
# attention projections, the ResNet convolutions and the other Linear/Conv2d layers can be adapted (kohya's
# "LoCon" / conv_dim): conv1, conv2, conv_shortcut, time_emb_proj, proj_in, proj_out, ff.net.0.proj, ff.net.2,
# conv_in, conv_out, downsamplers/upsamplers' "conv". The full-resolution ResNet path of a UNet has no attention,
# so only conv layers let a LoRA change it.
# Names that the kohya export round-trips through diffusers' kohya loader (tests/t2i check it): every kohya
# module name `lora_unet_<path with "_">` is mapped back by `_convert_unet_lora_key`.
KOHYA_UNET_LAYERS = (
    *UNET_TARGET_MODULES, "conv1", "conv2", "conv_shortcut", "time_emb_proj", "proj_in", "proj_out",
    "ff.net.0.proj", "ff.net.2", "conv_in", "conv_out",
)  # fmt: skip


@dataclass
class LoraTrainConfig:
    """`vlgen train lora` options. Defaults follow diffusers' script unless a comment says why not.

    Every field is the CLI option of the same name (`instance_prompt` <-> `--instance-prompt`); train with
    `train_lora(cfg)`.

    Example::

        import vlgen

        cfg = vlgen.LoraTrainConfig(
            instance_data_dir="data/3d_icons", output_dir="runs/3dicon",
            instance_prompt="a 3D icon in the style of TOK", rank=8, max_train_steps=500,
        )
    """

    pretrained_model_name_or_path: str = DEFAULT_MODELS["sdxl"]
    # sdxl, sd15 or flux (vlgen.t2i.families); None: read from the base's model_index.json
    family: str | None = None
    # None, "none" or "" -> the base model's own VAE, as diffusers' script and `vlgen generate` (SDXL base's
    # VAE has force_upcast, so it runs in fp32 under fp16 training); the shipped recipe names the fp16-fix VAE.
    pretrained_vae_model_name_or_path: str | None = None
    instance_data_dir: str = ""  # images, optionally with an imagefolder metadata.jsonl
    output_dir: str = ""
    instance_prompt: str = ""  # "a 3D icon in the style of TOK": the trigger phrase
    caption_column: str | None = None  # per-image prompts from metadata.jsonl instead of instance_prompt
    # Prior preservation (DreamBooth, Ruiz et al. 2023): class images from the base model keep the prior.
    with_prior_preservation: bool = False
    class_data_dir: str | None = None  # default: OUTPUT_DIR/class_images
    class_prompt: str | None = None
    num_class_images: int = 100
    prior_loss_weight: float = 1.0
    sample_batch_size: int = 4  # batch size when generating class images
    # Images
    resolution: int = 1024
    center_crop: bool = False  # else a random crop (seeded per image)
    random_flip: bool = False
    aspect_ratio_buckets: bool = False  # off: every image becomes resolution x resolution, as diffusers'
    # Optimisation
    train_batch_size: int = 4
    num_train_epochs: int = 1
    max_train_steps: int | None = None  # overrides num_train_epochs
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    learning_rate: float = 1e-4
    text_encoder_lr: float = 5e-6
    lr_scheduler: LrSchedulerName = "constant"
    lr_warmup_steps: int = 0  # diffusers: 500, ignored by its default "constant"; 0 says what happens
    lr_num_cycles: int = 1
    lr_power: float = 1.0
    snr_gamma: float | None = None  # Min-SNR weighting (Hang et al. 2023); 5.0 recommended (DDPM bases)
    noise_offset: float = 0.0  # DDPM bases
    # Flow matching (Flux), as diffusers' train_dreambooth_lora_flux.py: the timestep density and loss weights
    weighting_scheme: Literal["none", "sigma_sqrt", "logit_normal", "mode", "cosmap"] = "none"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    guidance_scale: float = 3.5  # the guidance input of guidance-distilled FLUX.1 [dev] during training
    max_sequence_length: int = 512  # T5 tokens of a Flux prompt (schnell was trained with 256)
    use_8bit_adam: bool = False
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-4
    adam_weight_decay_text_encoder: float = 1e-3
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    rank: int = 4
    # Comma-separated UNet module names to adapt, as diffusers' `--lora_layers` ("to_k,to_q,to_v,to_out.0,conv1");
    # None: the attention projections (UNET_TARGET_MODULES). See the note on KOHYA_UNET_LAYERS above.
    lora_layers: str | None = None
    train_text_encoder: bool = False
    use_dora: bool = False  # DoRA (Liu et al. 2024, peft's use_dora): weight-decomposed LoRA; diffusers format only
    caption_dropout_rate: float = 0.0  # train on the empty prompt this often (keeps the base's unconditional output)
    use_ema: bool = False  # EMA of the LoRA weights: OUT/ holds them, the raw ones go to OUT/raw/
    ema_decay: float = 0.9999  # diffusers' EMAModel: min(ema_decay, (1 + step) / (10 + step))
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    # The frozen denoiser loaded quantised, the LoRA trained on top in fp32 (QLoRA, Dettmers et al. 2023, as
    # diffusers' flux_lora_quantization recipe): "nf4" bitsandbytes 4-bit NormalFloat computing in the training
    # dtype, "int8" torchao int8 weight-only (both on CPU too). `pip install 'vlgen[quant]'`. The LoRA file is the
    # same as without it and loads into the unquantised base.
    quantize_base: Literal["nf4", "int8"] | None = None
    seed: int = 0
    # Caches (computed once before the first step; see lora_data.py)
    cache_latents: bool = True
    cache_text_embeddings: bool = True  # only possible while the text encoders are frozen
    # Checkpoints and validation
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint directory
    overwrite_output_dir: bool = False  # clear an --output-dir that holds another run (refused otherwise)
    validation_prompt: str | None = None
    num_validation_images: int = 4
    validation_steps: int | None = None  # None: validate once, at the end
    num_inference_steps: int = 25  # validation and class images
    # Validation that measures: "CLIP-T,CLIP-I,DINO" (or a subset; "all") scored at every validation - CLIP-T of
    # the images against their prompt, CLIP-I and DINO against the instance images, as `vlgen evaluate images`
    validation_metrics: str | None = None
    metric_for_best_model: str | None = None  # one of them: the best LoRA is also kept in OUT/best/
    clip_model: str | None = None  # default: DEFAULT_MODELS["clip"]
    dino_model: str | None = None  # default: DEFAULT_MODELS["dino"]
    # Outputs
    export_format: Literal["diffusers", "kohya"] = "diffusers"  # kohya: a second, kohya-keyed file too
    cpu: bool = False  # force CPU even when a GPU is present

    def __post_init__(self) -> None:
        self.lr_scheduler = self.lr_scheduler.replace("-", "_")  # type: ignore[assignment]


# Options that may change on `--resume-from-checkpoint` (see vlgen.captioning.train_config.RESUME_MAY_DIFFER):
# run length, checkpointing, validation images and export - not the data, model, LoRA or optimisation.
RESUME_MAY_DIFFER = frozenset({
    "resume_from_checkpoint", "overwrite_output_dir", "output_dir", "num_train_epochs", "max_train_steps",
    "checkpointing_steps", "checkpoints_total_limit", "validation_prompt", "num_validation_images",
    "validation_steps", "num_inference_steps", "sample_batch_size", "export_format", "cpu", "validation_metrics",
    "metric_for_best_model", "clip_model", "dino_model",
})  # fmt: skip
VALIDATION_METRICS = ("CLIP-T", "CLIP-I", "DINO")


def validation_metric_keys(cfg: LoraTrainConfig) -> tuple[str, ...]:
    """--validation-metrics as keys ("CLIP-T", ...), () when off; ConfigError for anything else."""
    if not cfg.validation_metrics:
        return ()
    spec = cfg.validation_metrics
    by_lower = {k.lower(): k for k in VALIDATION_METRICS}
    items = (
        list(VALIDATION_METRICS) if spec.strip().lower() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    )
    bad = [s for s in items if s.lower() not in by_lower]
    if bad or not items:
        raise ConfigError(
            f"--validation-metrics {spec!r}: choose from {', '.join(VALIDATION_METRICS)} (comma-separated) or all"
        )
    return tuple(dict.fromkeys(by_lower[s.lower()] for s in items))


RESUME_PATH_KEYS = frozenset({
    "instance_data_dir", "pretrained_model_name_or_path", "pretrained_vae_model_name_or_path", "class_data_dir",
})  # fmt: skip


def unet_lora_layers(cfg: LoraTrainConfig, default: tuple[str, ...] = UNET_TARGET_MODULES) -> tuple[str, ...]:
    """The denoiser module names `--lora-layers` asks for (comma-separated, spaces and duplicates dropped);
    the family's default targets (`default`; the UNet attention projections) when it is not given."""
    if cfg.lora_layers is None:
        return default
    names = [n.strip() for n in cfg.lora_layers.split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


_BLOCK_PREFIX = re.compile(
    r"^(?:.*\.)?(?:resnets|attentions|transformer_blocks|single_transformer_blocks|downsamplers|upsamplers)\.\d+\."
)


def _short_name(path: str) -> str:
    """`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q` -> `to_q`: the name `--lora-layers` takes."""
    name = _BLOCK_PREFIX.sub("", path)
    return name.split(".", 1)[1] if name.startswith(("attn1.", "attn2.")) else name


def match_lora_layers(unet: Any, names: tuple[str, ...], what: str = "UNet") -> dict[str, list[str]]:
    """{name: the paths of the UNet's Linear/Conv2d modules it matches (path == name or ends with "." + name,
    peft's rule)}. ConfigError naming the first name that matches none, with a list of valid names."""
    import torch

    adaptable = [n for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    matches = {name: [p for p in adaptable if p == name or p.endswith("." + name)] for name in names}
    if not names:
        raise ConfigError("--lora-layers is empty: give comma-separated module names, e.g. to_k,to_q,to_v,to_out.0")
    for name, paths in matches.items():
        if not paths:
            valid = sorted({_short_name(p) for p in adaptable})
            raise ConfigError(
                f"--lora-layers: {name!r} matches no Linear or Conv2d module of the {what}; valid names include "
                + ", ".join(valid[:24])
                + (" ..." if len(valid) > 24 else "")
            )
    return matches


def check_lora_layers(cfg: LoraTrainConfig, family: str = "sdxl") -> None:
    """What can be checked without the model: a non-empty list, and names the kohya export round-trips (UNet
    families; Flux's fused layout is checked on the matched module paths, families/flux.py)."""
    names = unet_lora_layers(cfg)
    if not names:
        raise ConfigError("--lora-layers is empty: give comma-separated module names, e.g. to_k,to_q,to_v,to_out.0")
    if cfg.export_format == "kohya" and family in ("sdxl", "sd15"):
        bad = [n for n in names if n not in KOHYA_UNET_LAYERS]
        if bad:
            raise ConfigError(
                f"--export-format kohya supports --lora-layers {','.join(KOHYA_UNET_LAYERS)} only; got {','.join(bad)}"
            )
