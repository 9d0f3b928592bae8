"""Text-to-image for the server: an SDXL / SD 1.5 / Flux.1 pipeline (plus an optional LoRA) loaded once, called
per request.

A thin shell over `vlgen.t2i.generate`, the library behind `vlgen generate`: the pipeline is loaded by
`load_pipeline` (fp16 on CUDA, fp32 on CPU), the LoRA by `apply_lora` (a training output directory or a
.safetensors file), and every image is made by `generate_image` (a CPU generator seeded with the request's
seed). So the server and `vlgen generate` give the same image for the same prompt and settings
(tests/serving/test_server.py checks the PNG bytes). The app only calls `TextToImage.load(...)` and
`.generate(...)`; requests reach it through a `GenerationQueue` (admission, limits, cancellation).

Each request's `lora_scale` (default 1.0, `GenerationParams`) is set on the adapter with `set_lora_scale`,
under the same lock as the pipeline call, so requests with different scales never see each other's setting
(0.0 = the base model).

Cancelling (the request timed out, or its client left): `generate(..., should_stop=)` is polled before every
ResNet and transformer block of the UNet and the VAE (forward pre-hooks, installed once) and at the end of
every denoising step (`callback_on_step_end`); the first poll that says stop raises `GenerationCancelled`
out of the pipeline, so the worker is free within one block (milliseconds on a GPU), not after the step in
progress (SDXL at 1024 px on a CPU: tens of seconds per step) and the VAE decode. We raise rather than set
the pipeline's interrupt flag: diffusers' `interrupt` skips the remaining steps but still decodes the
unfinished latents with the VAE, which is work nobody will see.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from vlgen.hub import DEFAULT_MODELS
from vlgen.serving.batching import QueueFullError
from vlgen.serving.giving_up import ClientGone, run_while_connected
from vlgen.t2i.generate import GenerationParams

T = TypeVar("T")

DEFAULT_T2I_BASE = DEFAULT_MODELS["sdxl"]
HOW_TO_ENABLE_T2I = (
    "text-to-image is not enabled on this server: restart it with "
    "`vlgen serve --t2i-base stabilityai/stable-diffusion-xl-base-1.0` (or an SD 1.5 / Flux.1 base, a local "
    "directory or a .safetensors file), "
    "optionally with `--lora DIR`"
)


class GenerationCancelled(Exception):
    """Raised inside the pipeline when the caller gave up (timeout, client gone); frees the worker early."""


class TextToImage:
    def __init__(self, pipe, *, base: str, lora: str | None, device: str) -> None:
        self.pipe = pipe
        self.base = base
        self.lora = lora
        self.device = device
        from vlgen.t2i.generate import family_defaults, pipeline_family

        self.family = pipeline_family(pipe)
        self.default_size = self.family.native_resolution(pipe)
        # (num_inference_steps, guidance_scale) of a request that leaves them out: the base family's defaults
        self.defaults = family_defaults(pipe, None, None)
        self._lock = threading.Lock()  # one pipeline call at a time: schedulers and the LoRA scale are state
        self._lora_scale = 1.0 if lora is not None else None  # what the adapter is set to now
        self._should_stop: Callable[[], bool] | None = None  # the running call's, polled by the block hooks
        self.cancel_points = self._install_cancel_hooks()

    def _install_cancel_hooks(self) -> int:
        """A forward pre-hook on every ResNet/transformer block of the denoiser (UNet or Flux transformer) and
        the VAE; returns how many."""
        from diffusers.models.attention import BasicTransformerBlock
        from diffusers.models.resnet import ResnetBlock2D
        from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock

        blocks = (ResnetBlock2D, BasicTransformerBlock, FluxTransformerBlock, FluxSingleTransformerBlock)

        def check(module, args) -> None:
            should_stop = self._should_stop
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"cancelled before a {type(module).__name__}")

        count = 0
        for component in (getattr(self.pipe, self.family.denoiser_name), self.pipe.vae):
            for module in component.modules():
                if isinstance(module, blocks):
                    module.register_forward_pre_hook(check)
                    count += 1
        return count

    @classmethod
    def load(
        cls, base: str = DEFAULT_T2I_BASE, lora: str | None = None, device: str = "cpu", vae: str | None = None
    ) -> TextToImage:
        from vlgen.t2i.generate import apply_lora, load_pipeline, lora_file

        if lora is not None:
            lora_file(lora)  # a one-line error before the (slow) base model load
        pipe = load_pipeline(base, vae, device=device)  # vae None: the base's own, as `vlgen generate`
        if lora is not None:
            apply_lora(pipe, lora, 1.0)
        return cls(pipe, base=base, lora=lora, device=device)

    def generate(
        self, prompt: str, params: GenerationParams | None = None, should_stop: Callable[[], bool] = lambda: False
    ):
        """One PIL image of `prompt` (`params` None: the defaults). `should_stop()` is polled before every
        UNet/VAE block and after every denoising step."""
        import torch

        from vlgen.t2i.generate import generate_image, set_lora_scale

        def on_step_end(pipe, step, timestep, callback_kwargs):
            if should_stop():
                raise GenerationCancelled(f"cancelled after step {step + 1}")
            return callback_kwargs

        opts = params or GenerationParams()
        with self._lock:
            if should_stop():  # gave up while waiting for the lock
                raise GenerationCancelled("cancelled before it started")
            if self.lora is not None:
                scale = opts.lora_scale
                if scale != self._lora_scale:
                    self._lora_scale = None  # unknown until set_lora_scale returns
                    set_lora_scale(self.pipe, scale)
                    self._lora_scale = scale
            self._should_stop = should_stop
            try:
                with torch.inference_mode():
                    return generate_image(
                        self.pipe,
                        prompt,
                        seed=opts.seed,
                        negative_prompt=opts.negative_prompt,
                        num_inference_steps=opts.num_inference_steps,
                        guidance_scale=opts.guidance_scale,
                        width=opts.width,
                        height=opts.height,
                        callback_on_step_end=on_step_end,
                    )
            finally:
                self._should_stop = None


class GenerationQueue:
    """Admission, limits and cancellation for text-to-image requests: the generation counterpart of
    `MicroBatcher` (there is nothing to batch: one pipeline call at a time, on its own thread).

        queue = GenerationQueue(max_queue=4)
        result = await queue.run(work, request, timeout_s)   # work(should_stop) runs on the generation thread
        queue.shutdown()                                     # app shutdown: queued calls never start

    At most `max_queue` requests are admitted (one runs, the others wait); one more gets `QueueFullError` at
    once, with a Retry-After from the recent generation times. A request that times out or whose client
    leaves is cancelled where it stands: queued, it never starts; running, `should_stop()` turns true and
    `TextToImage.generate` stops before its next UNet/VAE block.
    """

    def __init__(self, max_queue: int, name: str = "generate") -> None:
        if max_queue < 1:
            raise ValueError(f"bad generation queue limit: {max_queue=}")
        self.max_queue = max_queue
        self.name = name
        self.admitted = 0  # requests admitted and not yet answered (the running one included)
        self.completed = 0
        self.cancelled = 0  # timed out or client gone
        self.ema_s = 0.0  # smoothed seconds per generation, for Retry-After
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vlgen-{name}")

    def retry_after_s(self) -> int:
        return max(1, round(self.ema_s or 10.0) * self.admitted)

    def stats(self) -> dict[str, int]:
        return {"admitted": self.admitted, "completed": self.completed, "cancelled": self.cancelled}

    async def run(self, work: Callable[[Callable[[], bool]], T], request: Any, timeout_s: float) -> T:
        """`work(should_stop)` on the generation thread, awaited while `request`'s client stays connected.

        Raises `QueueFullError` (nothing started), or `asyncio.TimeoutError` / `ClientGone` (the work is
        cancelled and unwinds in the background); any error `work` raises comes through as is.
        """
        if self.admitted >= self.max_queue:
            raise QueueFullError(
                f"{self.admitted} generation requests are already admitted (--max-generate-queue); retry later",
                self.retry_after_s(),
            )
        cancel = threading.Event()
        t0 = time.perf_counter()
        self.admitted += 1
        try:
            # A queued call that is cancelled never starts; a running one stops at its next block (cancel).
            future = asyncio.get_running_loop().run_in_executor(self._executor, work, cancel.is_set)
            result = await run_while_connected(request, future, timeout_s)
        except (asyncio.TimeoutError, ClientGone):
            cancel.set()
            self.cancelled += 1
            raise
        finally:
            self.admitted -= 1
        elapsed = time.perf_counter() - t0
        self.completed += 1
        self.ema_s = elapsed if self.completed == 1 else 0.8 * self.ema_s + 0.2 * elapsed
        return result

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
