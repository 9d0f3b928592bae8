"""`--quantize-base`: the frozen denoiser of a LoRA run loaded quantised (diffusers' quantization configs).

Checked before any model loads (`check_quantize_base`, from lora_trainer.check_config); `load_training_components`
is what the trainer loads its parts with.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch

from vlgen.errors import ConfigError
from vlgen.t2i.conditioning import load_components

if TYPE_CHECKING:
    from vlgen.t2i.families.base import Components
    from vlgen.t2i.lora_config import LoraTrainConfig

# --quantize-base -> the library diffusers quantises with ('vlgen[quant]' installs both)
QUANTIZE_LIBRARIES = {"nf4": "bitsandbytes", "int8": "torchao"}


def check_quantize_base(cfg: LoraTrainConfig) -> None:
    kind = cfg.quantize_base
    if kind not in QUANTIZE_LIBRARIES:
        raise ConfigError(f"--quantize-base {kind}: choose {' or '.join(QUANTIZE_LIBRARIES)}")
    if kind == "nf4" and (cfg.cpu or not torch.cuda.is_available()):
        # bitsandbytes has a CPU backend, but diffusers' quantizer refuses to load without a GPU (0.42:
        # BnB4BitDiffusersQuantizer.validate_environment raises "No GPU found. A GPU is needed for quantization.").
        raise ConfigError(
            "--quantize-base nf4 needs a CUDA GPU (diffusers' bitsandbytes quantizer does not load on CPU); "
            "on this machine use --quantize-base int8"
        )
    library = QUANTIZE_LIBRARIES[kind]
    try:
        importlib.import_module(library)
    except ImportError:
        raise ConfigError(f"--quantize-base {kind} needs {library}: pip install 'vlgen[quant]'") from None


def denoiser_quantization_config(kind: str | None, compute_dtype: torch.dtype) -> Any:
    """diffusers' quantization config of the frozen denoiser for --quantize-base, None for none.

    nf4: bitsandbytes 4-bit NormalFloat weights, matmuls in `compute_dtype` (the training dtype), as diffusers'
    flux_lora_quantization recipe; int8: torchao int8 weight-only (per-channel scales; runs on CPU).
    """
    if kind is None:
        return None
    if kind == "nf4":
        from diffusers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)
    from diffusers import TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig

    return TorchAoConfig(Int8WeightOnlyConfig())


def load_training_components(cfg: LoraTrainConfig, weight_dtype: torch.dtype) -> Components:
    """The base's parts for training: with --quantize-base the denoiser is loaded quantised, the rest of it in
    `weight_dtype` (a quantised model cannot be cast later); the other parts as `load_components` loads them."""
    qconfig = denoiser_quantization_config(cfg.quantize_base, weight_dtype)
    kwargs = {} if qconfig is None else {"quantization_config": qconfig, "torch_dtype": weight_dtype}
    return load_components(
        cfg.pretrained_model_name_or_path, cfg.pretrained_vae_model_name_or_path, cfg.family, **kwargs
    )
