"""`--quantize-base`: the frozen denoiser of a LoRA run loaded quantised (diffusers' quantization configs; nf4
without a GPU through bitsandbytes' own layers, `quantize_nf4_`, since diffusers' quantizer refuses to load there).

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
    nf4_here = cfg.quantize_base == "nf4" and not diffusers_loads_nf4(cfg.cpu)
    qconfig = None if nf4_here else denoiser_quantization_config(cfg.quantize_base, weight_dtype)
    kwargs = {} if cfg.quantize_base is None else {"torch_dtype": weight_dtype}
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    parts = load_components(
        cfg.pretrained_model_name_or_path, cfg.pretrained_vae_model_name_or_path, cfg.family, **kwargs
    )
    if nf4_here:
        quantize_nf4_(parts.denoiser, weight_dtype)
    return parts


def diffusers_loads_nf4(cpu: bool) -> bool:
    """Whether diffusers' bitsandbytes quantizer loads here: it wants a GPU (diffusers 0.42's
    BnB4BitDiffusersQuantizer.validate_environment raises "No GPU found. A GPU is needed for quantization." on a
    CPU-only machine, although bitsandbytes >= 0.49 quantises and runs 4-bit layers on CPU)."""
    return not cpu and torch.cuda.is_available()


def _not_converted(name: str, keep: list[str]) -> bool:
    # diffusers' rule for modules_to_not_convert: a listed name matches the module or any module under it
    return any(name == k or name.startswith(k + ".") or f".{k}." in f".{name}." for k in keep)


def quantize_nf4_(model: torch.nn.Module, compute_dtype: torch.dtype) -> int:
    """Every `nn.Linear` of `model` (but its `_keep_in_fp32_modules`) replaced, in place, by bitsandbytes'
    `Linear4bit` holding its weight in NF4 (blocks of 64, no double quantisation: BitsAndBytesConfig's defaults),
    matmuls in `compute_dtype`; the model flagged as diffusers flags a model it loaded in 4-bit, so peft adapts
    the layers with its bitsandbytes LoRA and the trainer does not cast it. What diffusers' quantizer does at
    load time where it runs (`diffusers_loads_nf4`); here the full-precision weights are loaded first, so the
    peak memory of loading is the unquantised model's. Returns the number of layers quantised."""
    import bitsandbytes as bnb

    keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    device = next(model.parameters()).device
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or _not_converted(name, keep):
            continue
        layer = bnb.nn.Linear4bit(
            module.in_features, module.out_features, bias=module.bias is not None, compute_dtype=compute_dtype,
            compress_statistics=False, quant_type="nf4", device="meta",
        )  # fmt: skip
        weight = module.weight.detach().to(compute_dtype)
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=False, quant_type="nf4")
        if module.bias is not None:
            layer.bias = torch.nn.Parameter(module.bias.detach().to(compute_dtype), requires_grad=False)
        if module.in_features % layer.weight.blocksize:
            # bitsandbytes 0.50 repacks 4-bit weights for its AVX512-BF16 CPU kernel on the first no-grad forward,
            # which fails ("shape '[N, 0]' is invalid") unless in_features is a multiple of the quantisation block
            # (64): so for layers narrower than that (tiny test models; every FLUX / SD layer is a multiple of
            # 64) the plain dequantise-and-matmul path. tests/t2i/test_quantize_base.py watches this attribute.
            layer.support_avx512bf16_for_cpu = False
        model.set_submodule(name, layer.to(device))  # Params4bit quantises on its move to a device
        replaced += 1
    model.is_quantized = True
    model.is_loaded_in_4bit = True
    return replaced
