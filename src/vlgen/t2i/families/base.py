"""What a text -> image base-model family is to vlgen: `T2IFamily`, and the loaded parts of one base.

A family (SDXL, SD 1.5, Flux.1, ...) is one module in this package holding one `T2IFamily` subclass. It
knows everything that differs between bases, so that training (lora_trainer.py), generation (generate.py),
export (lora_export.py) and the model card never test for a family by name:
- its diffusers pipeline class and the names of its parts (the denoiser is a `unet` or a `transformer`);
- which parts take LoRA (`lora_text_encoders`) and the default LoRA targets of its denoiser;
- how prompts become conditioning (`tokenize` -> `encode`, per-sample tensors that can be cached);
- the training objective (`objective`: DDPM epsilon/v-prediction or flow matching) and the denoiser call
  (`predict`: SDXL's size/crop ids, Flux's packed latents and position ids);
- its export formats (diffusers through the pipeline's `save_lora_weights`; kohya's key layout);
- its generation defaults (steps, guidance, resolution) and what the model card says about the base.
Adding a family (SD3.5, Qwen-Image) is one module with a subclass plus its tiny builder in vlgen.testing:
README, "Adding a base-model family".
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from vlgen.t2i.lora_config import LoraTrainConfig


@dataclass(frozen=True)
class GenerationDefaults:
    """What `vlgen generate` uses for a parameter the user left unset ("family default")."""

    num_inference_steps: int
    guidance_scale: float
    resolution: int  # the side of the base's native square images


@dataclass
class Components:
    """The parts of one base, loaded one by one for training (fp32 on CPU), in the family's names."""

    family: T2IFamily
    tokenizers: list[Any]  # in the order of family.tokenizer_names
    text_encoders: list[Any]  # in the order of family.text_encoder_names; None once dropped (drop_frozen)
    vae: Any  # AutoencoderKL
    denoiser: Any  # UNet2DConditionModel / FluxTransformer2DModel
    noise_scheduler: Any  # the training schedule, from the base's scheduler config
    base_path: Path
    vae_ref: str | None  # the separate VAE used, None for the base's own

    # SDXL-era names, kept because users' and tests' code reads them.
    @property
    def unet(self) -> Any:
        return self.denoiser

    @property
    def text_encoder(self) -> Any:
        return self.text_encoders[0]

    @property
    def text_encoder_2(self) -> Any:
        return self.text_encoders[1] if len(self.text_encoders) > 1 else None

    @property
    def tokenizer(self) -> Any:
        return self.tokenizers[0]

    def frozen_modules(self) -> list[Any]:
        return [m for m in (self.denoiser, self.vae, *self.text_encoders) if m is not None]

    def drop_frozen(self, vae: bool, text_encoders: bool) -> None:
        """Free the VAE / frozen text encoders once their outputs are cached (diffusers' scripts do too):
        for SDXL that is 2.8 GB of fp32 weights, for Flux's T5-XXL 19 GB, that training never reads again."""
        if vae:
            self.vae = None
        if text_encoders:
            self.text_encoders = [None] * len(self.text_encoders)
        gc.collect()

    def restore_frozen(self, device: torch.device, dtype: torch.dtype) -> None:
        """Reload what `drop_frozen` freed (for validation images), in the precision training used."""
        from vlgen.t2i.conditioning import load_vae

        if self.vae is None:
            vae = load_vae(self.vae_ref, self.base_path).to(device)
            self.vae = vae if vae.config.force_upcast else vae.to(dtype)
        for i, name in enumerate(self.family.text_encoder_names):
            if self.text_encoders[i] is None:
                self.text_encoders[i] = self.family.load_text_encoder(self.base_path, name).to(device, dtype)


@dataclass
class Prediction:
    """One micro-batch made noisy by an objective: what the denoiser sees and what it should output."""

    noisy: torch.Tensor  # (n, C, h, w) latents with noise
    timesteps: torch.Tensor  # (n,) the denoiser's time input, in the family's convention
    target: torch.Tensor  # (n, C, h, w)
    weights: torch.Tensor | None  # (n,) per-sample loss weights; None: plain MSE
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the flow-matching sigmas


class T2IFamily:
    """Base of every family module's class; its class attributes are the family's facts."""

    name: ClassVar[str]
    pipeline_class: ClassVar[str]  # diffusers class name, also model_index.json's `_class_name`
    denoiser_name: ClassVar[str]  # "unet" or "transformer": the pipeline's attribute and subfolder
    denoiser_class: ClassVar[str]
    denoiser_label: ClassVar[str] = "UNet"  # in messages
    tokenizer_names: ClassVar[tuple[str, ...]]
    text_encoder_names: ClassVar[tuple[str, ...]]
    text_encoder_classes: ClassVar[tuple[str, ...]]  # transformers class per text encoder
    lora_text_encoders: ClassVar[tuple[str, ...]]  # the text encoders `--train-text-encoder` adapts
    default_lora_targets: ClassVar[tuple[str, ...]]
    text_encoder_lora_targets: ClassVar[tuple[str, ...]] = ("q_proj", "k_proj", "v_proj", "out_proj")
    kohya_layers: ClassVar[tuple[str, ...]] = ()  # --lora-layers the kohya export round-trips
    default_hub_id: ClassVar[str]
    # modelspec / kohya metadata of the kohya export
    kohya_base_model_version: ClassVar[str] = ""
    modelspec_architecture: ClassVar[str] = ""
    # DDPM-only options (noise offset, Min-SNR) do not apply to flow matching, and the other way round.
    objective_kind: ClassVar[str] = "ddpm"  # or "flow_matching"
    min_resolution_multiple: ClassVar[int] = 8  # the VAE downsamples by 8 (Flux packs 2x2 latents: 16)

    # --------------------------------------------------------------------------------------- facts
    def generation_defaults(self, denoiser_config: Any = None) -> GenerationDefaults:
        raise NotImplementedError

    def licence_note(self, denoiser_config: Any = None, base: str = "") -> str | None:
        """A line for the model card about the base's licence, or None."""
        return None

    def training_notes(self, denoiser_config: Any = None, base: str = "") -> list[str]:
        """Warnings for the model card (e.g. a LoRA on a distilled base)."""
        return []

    def check_config(self, cfg: LoraTrainConfig) -> None:
        """ConfigError for options that do not apply to this family (before anything loads)."""
        from vlgen.errors import ConfigError

        if cfg.resolution % self.min_resolution_multiple:
            raise ConfigError(
                f"--resolution must be a multiple of {self.min_resolution_multiple} for {self.name}, "
                f"got {cfg.resolution}"
            )
        if self.objective_kind == "ddpm":
            if cfg.weighting_scheme != "none":
                raise ConfigError(
                    f"--weighting-scheme {cfg.weighting_scheme} is for flow-matching bases (Flux); {self.name} "
                    "trains with DDPM noise: use --snr-gamma"
                )
        else:
            for option, value, default in (("snr_gamma", cfg.snr_gamma, None), ("noise_offset", cfg.noise_offset, 0.0)):
                if value != default:
                    raise ConfigError(
                        f"--{option.replace('_', '-')} {value} is for DDPM bases (SD 1.5, SDXL); {self.name} trains "
                        "with flow matching: use --weighting-scheme"
                    )

    # --------------------------------------------------------------------------------------- loading
    def load_text_encoder(self, path: Path, name: str) -> Any:
        import transformers

        cls = getattr(transformers, self.text_encoder_classes[self.text_encoder_names.index(name)])
        return cls.from_pretrained(path, subfolder=name)

    def load_tokenizer(self, path: Path, name: str) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, subfolder=name)

    def load_denoiser(self, path: Path, quantization_config: Any = None, torch_dtype: torch.dtype | None = None) -> Any:
        """The UNet/transformer. `quantization_config` (diffusers' BitsAndBytesConfig or TorchAoConfig) loads its
        Linear layers quantised; `torch_dtype` is then the dtype of the rest, which cannot be cast afterwards
        (diffusers refuses `.to(dtype)` on a quantised model)."""
        import diffusers

        kwargs: dict[str, Any] = {}
        if quantization_config is not None:
            kwargs["quantization_config"] = quantization_config
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype  # diffusers 0.42's name (torch_dtype is deprecated)
        return getattr(diffusers, self.denoiser_class).from_pretrained(path, subfolder=self.denoiser_name, **kwargs)

    def load_noise_scheduler(self, path: Path) -> Any:
        raise NotImplementedError

    def load_components(
        self, path: Path, vae_ref: str | None, quantization_config: Any = None, torch_dtype: torch.dtype | None = None
    ) -> Components:
        """Every part in fp32; the denoiser quantised with `quantization_config` in `torch_dtype` if given
        (`load_denoiser`: `vlgen train lora --quantize-base`)."""
        from vlgen.t2i.conditioning import load_vae

        return Components(
            family=self,
            tokenizers=[self.load_tokenizer(path, n) for n in self.tokenizer_names],
            text_encoders=[self.load_text_encoder(path, n) for n in self.text_encoder_names],
            vae=load_vae(vae_ref, path),
            denoiser=self.load_denoiser(path, quantization_config, torch_dtype),
            noise_scheduler=self.load_noise_scheduler(path),
            base_path=path,
            vae_ref=vae_ref,
        )

    # --------------------------------------------------------------------------------------- conditioning
    def tokenize(self, tokenizers: list[Any], prompts: list[str], cfg: LoraTrainConfig | None = None) -> list[Any]:
        """Input ids per tokenizer, padded as the pipeline pads them."""
        raise NotImplementedError

    def encode(self, text_encoders: list[Any], input_ids: list[Any], grad: bool = False) -> dict[str, Any]:
        """{name: (B, ...) tensor}: the conditioning of a batch of prompts, as the pipeline computes it.
        `grad`: text-encoder LoRA trains, so the adapted encoders run with autograd."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------- training
    def latents_from_vae(self, sample: torch.Tensor, vae_config: Any) -> torch.Tensor:
        """A VAE posterior sample -> the latents the denoiser is trained on (the pipeline's inverse)."""
        shift = getattr(vae_config, "shift_factor", None) or 0.0
        return (sample - shift) * vae_config.scaling_factor

    def make_noisy(self, latents: torch.Tensor, g: torch.Generator, cfg: LoraTrainConfig, scheduler: Any) -> Prediction:
        from vlgen.t2i.objectives import ddpm_noisy, flow_matching_noisy

        if self.objective_kind == "ddpm":
            return ddpm_noisy(latents, g, cfg, scheduler)
        return flow_matching_noisy(latents, g, cfg, scheduler)

    def predict(
        self, denoiser: Any, noisy: Prediction, cond: dict[str, Any], batch: dict[str, Any], cfg: LoraTrainConfig
    ) -> torch.Tensor:
        """The denoiser's output for `noisy`, shaped like `noisy.target`."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------- inference
    def pipeline(self, parts: Components, denoiser: Any = None, text_encoders: list[Any] | None = None) -> Any:
        """The family's diffusers pipeline over already-loaded parts (no second copy of any weights).
        Inference uses the base's own scheduler config, not the training schedule."""
        import diffusers

        # any scheduler class reads the file; `_class_name` says which one the base uses
        sched_cfg = diffusers.DDPMScheduler.load_config(parts.base_path, subfolder="scheduler")
        sched_cls = getattr(diffusers, sched_cfg.get("_class_name", ""))
        encoders = text_encoders if text_encoders is not None else parts.text_encoders
        kwargs = {
            "vae": parts.vae,
            self.denoiser_name: denoiser if denoiser is not None else parts.denoiser,
            "scheduler": sched_cls.from_config(sched_cfg),
            **dict(zip(self.tokenizer_names, parts.tokenizers, strict=True)),
            **dict(zip(self.text_encoder_names, encoders, strict=True)),
            **self.pipeline_extra_kwargs(),
        }
        pipe = getattr(diffusers, self.pipeline_class)(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def pipeline_extra_kwargs(self) -> dict[str, Any]:
        return {}

    def pipeline_call_kwargs(self, cfg: LoraTrainConfig | None = None) -> dict[str, Any]:
        """Extra arguments of the pipeline's __call__ that training's settings decide (e.g. Flux's
        max_sequence_length)."""
        return {}

    def native_resolution(self, pipe: Any) -> int:
        """The side of the square image the pipeline draws when no size is given."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------- export
    def save_lora_weights(self, folder: Path, weight_name: str, layers: dict[str, dict[str, Any]]) -> None:
        """diffusers' format: the pipeline class's own `save_lora_weights`, component by component."""
        import diffusers

        cls = getattr(diffusers, self.pipeline_class)
        kwargs = {self.save_lora_kwarg(name): sd for name, sd in layers.items()}
        cls.save_lora_weights(folder, weight_name=weight_name, safe_serialization=True, **kwargs)

    def save_lora_kwarg(self, component: str) -> str:
        """`save_lora_weights`' argument for a component's layers (unet_lora_layers, text_encoder_2_lora_layers)."""
        return f"{component}_lora_layers"

    def kohya_prefix(self, component: str) -> str:
        raise NotImplementedError

    def check_kohya_paths(self, paths: list[str]) -> None:
        """--export-format kohya: raise ConfigError, before training, for a LoRA module `paths` entry kohya's
        layout of this family has no key for. UNet families map every module: nothing to check (Flux overrides)."""

    def to_kohya(self, peft_sds: dict[str, dict[str, Any]], alphas: dict[str, float]) -> dict[str, Any]:
        """peft state dicts per component -> one kohya-keyed dict (with a 0-d `.alpha` per adapted module)."""
        from vlgen.t2i.lora_export import kohya_plain

        return kohya_plain(peft_sds, alphas, self.kohya_prefix)
