"""Text-to-image for the server: an SDXL pipeline (plus an optional LoRA) loaded once, called per request.

Deliberately one small class on plain diffusers, so it can later be swapped for `vlgen.t2i` without
touching the HTTP layer: the app only calls `TextToImage.load(...)` and `.generate(...)`.

The LoRA is loaded once as a PEFT adapter; each request's `lora_scale` goes through
`cross_attention_kwargs={"scale": s}`, which SDXL applies to the UNet and both text encoders for that call
only, so requests with different scales never see each other's setting (0.0 = the base model).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlgen.errors import ModelNotAvailableError
from vlgen.hub import DEFAULT_MODELS, resolve_model

DEFAULT_T2I_BASE = DEFAULT_MODELS["sdxl"]
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


class GenerationCancelled(Exception):
    """Raised inside the denoising loop when the caller gave up (timeout); frees the worker early."""


@dataclass(frozen=True)
class GenerateOptions:
    prompt: str
    negative_prompt: str | None = None
    seed: int = 0
    num_inference_steps: int = 30
    guidance_scale: float = 5.0
    lora_scale: float | None = None  # None: 1.0 when a LoRA is loaded
    width: int | None = None  # None: the model's native size (1024 for SDXL)
    height: int | None = None


class TextToImage:
    def __init__(self, pipe, *, base: str, lora: str | None, device: str) -> None:
        self.pipe = pipe
        self.base = base
        self.lora = lora
        self.device = device
        self.default_size = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
        self._lock = threading.Lock()  # one pipeline call at a time: schedulers keep per-call state

    @classmethod
    def load(cls, base: str = DEFAULT_T2I_BASE, lora: str | None = None, device: str = "cpu") -> TextToImage:
        import torch
        from diffusers import StableDiffusionXLPipeline

        path = resolve_model(base, what="SDXL base").path
        # fp32 everywhere: SDXL's own VAE overflows in fp16 (black images) unless the fp16-fix VAE is used.
        pipe = StableDiffusionXLPipeline.from_pretrained(path, torch_dtype=torch.float32)
        if lora is not None:
            lora_dir = Path(lora)
            if not (lora_dir / LORA_WEIGHTS).is_file():
                raise ModelNotAvailableError(f"--lora {lora}: {lora_dir / LORA_WEIGHTS} not found")
            pipe.load_lora_weights(str(lora_dir), weight_name=LORA_WEIGHTS, adapter_name="default")
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, base=base, lora=lora, device=device)

    def generate(self, opts: GenerateOptions, should_stop: Callable[[], bool] = lambda: False):
        """One PIL image. `should_stop()` is polled after every denoising step."""
        import torch

        def on_step_end(pipe, step, timestep, callback_kwargs):
            if should_stop():
                raise GenerationCancelled(f"cancelled after step {step + 1}")
            return callback_kwargs

        kwargs = {}
        if self.lora is not None:
            kwargs["cross_attention_kwargs"] = {"scale": 1.0 if opts.lora_scale is None else opts.lora_scale}
        # A CPU generator gives the same image for the same seed on any device (diffusers' advice).
        generator = torch.Generator("cpu").manual_seed(opts.seed)
        with self._lock, torch.inference_mode():
            out = self.pipe(
                prompt=opts.prompt,
                negative_prompt=opts.negative_prompt,
                num_inference_steps=opts.num_inference_steps,
                guidance_scale=opts.guidance_scale,
                width=opts.width or self.default_size,
                height=opts.height or self.default_size,
                generator=generator,
                callback_on_step_end=on_step_end,
                **kwargs,
            )
        return out.images[0]
