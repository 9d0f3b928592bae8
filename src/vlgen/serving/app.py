"""`create_app(settings)`: the FastAPI app behind `vlgen serve`.

    GET  /              the page (upload -> caption, prompt -> image)                    routes/info.py
    GET  /health        liveness + queue depth and batch-size statistics (no key needed)  routes/info.py
    GET  /v1/models     the loaded models, their defaults and limits                      routes/info.py
    POST /v1/caption    multipart: `file` (one image) and/or `files` (several); `num_beams`, `max_new_tokens`,
                        `caption_prompt` (vision-language caption models)
                                                                                          routes/caption.py
    POST /v1/generate   JSON: prompt, negative_prompt, seed, num_inference_steps, guidance_scale, lora_scale,
                        width, height, response_format ("png" -> image/png, "b64_json" -> JSON)
                                                                                          routes/generate.py
    GET  /openapi.json  the spec

Models load once, here, before the server binds (so /health answers only when ready). Inference never
runs on the event loop: captions go through the `MicroBatcher`'s worker thread, generation through the
`GenerationQueue`'s single thread, and image decoding through a small thread pool; every queue in front of
them is bounded and answers 503 + Retry-After when full. Every error is `{"error": {"message", "type",
"param"}}` (`responses.install_error_handlers`).

Memory: uploads are decoded two at a time and reduced to what the caption model needs as they decode
(`vlgen.data.images`, the same call `vlgen caption` makes), a request's images may hold at most
--max-request-pixels in all (from their headers, before any decode -> 413), and after every
RELEASE_EVERY_PIXELS decoded pixels freed heap pages go back to the OS (`vlgen.memory.release_memory`).

Giving up (`giving_up.run_while_connected`): a request that times out (504) or whose client disconnects is
dropped where it stands - its images still queued never reach the model (a batch already in the model
finishes), a queued generation never starts, and a running one stops before its next UNet/VAE block - so
the worker is free for the next.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI

from vlgen import __version__
from vlgen.serving.batching import MicroBatcher
from vlgen.serving.generation import GenerationQueue, TextToImage
from vlgen.serving.middleware import GuardMiddleware
from vlgen.serving.responses import install_error_handlers
from vlgen.serving.routes import caption, generate, info
from vlgen.serving.settings import ServeSettings
from vlgen.serving.state import ServerState

log = logging.getLogger("vlgen.serving")


def create_app(
    settings: ServeSettings,
    *,
    captioner=None,
    t2i: TextToImage | None = None,
) -> FastAPI:
    """Build the app and load its models (unless given: tests inject fakes). Raises `VlgenError` on bad
    settings or a model that cannot be loaded, before anything binds."""
    settings.check()
    if settings.num_threads is not None:
        import torch

        # On a busy or shared CPU, OpenMP threads that spin-wait for each other can make every forward pass
        # many times slower (benchmarks/README.md, "Serving"); 1 thread per process avoids that.
        torch.set_num_threads(settings.num_threads)
    if captioner is None or (t2i is None and settings.t2i_base):
        import torch

        device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if captioner is None:
            from vlgen.captioning.registry import load_captioner

            captioner = load_captioner(
                settings.caption_model, device=device, dtype=settings.dtype, prompt=settings.caption_prompt
            )
        if t2i is None and settings.t2i_base:
            t2i = TextToImage.load(settings.t2i_base, lora=settings.lora, device=device, vae=settings.vae)

    def caption_batch(images: list, key: tuple[int, int, str | None]) -> list[dict]:
        import torch

        from vlgen.captioning.batch import caption_batch as rows

        num_beams, max_new_tokens, prompt = key  # a request's caption_prompt (None: the captioner's own)
        with torch.inference_mode():
            return rows(captioner, images, num_beams, max_new_tokens, prompt)

    state = ServerState(
        settings=settings,
        captioner=captioner,
        t2i=t2i,
        batcher=MicroBatcher(
            caption_batch,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            name="caption",
        ),
        generation=GenerationQueue(settings.max_generate_queue),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.batcher.start()
        log.info("vlgen serve ready: %s", settings.public_dict())
        try:
            yield
        finally:
            await state.batcher.stop()
            state.generation.shutdown()

    app = FastAPI(
        title="vlgen",
        version=__version__,
        description="Image captioning and text-to-image (SDXL, SD 1.5, Flux). "
        "Errors: `{error: {message, type, param}}`.",
        docs_url=None,  # Swagger UI would load scripts from a CDN; the spec is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.batcher = state.batcher
    app.state.vlgen = state
    app.add_middleware(
        GuardMiddleware,
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    install_error_handlers(app)
    for module in (info, caption, generate):
        app.include_router(module.router(state))
    return app
