"""`create_app(settings)`: the FastAPI app behind `vlgen serve`.

    GET  /              the page (upload -> caption, prompt -> image)
    GET  /health        liveness + queue depth and batch-size statistics (no key needed)
    GET  /v1/models     the loaded models, their defaults and limits
    POST /v1/caption    multipart: `file` (one image) and/or `files` (several); `num_beams`, `max_new_tokens`
    POST /v1/generate   JSON: prompt, negative_prompt, seed, num_inference_steps, guidance_scale, lora_scale,
                        width, height, response_format ("png" -> image/png, "b64_json" -> JSON)
    GET  /openapi.json  the spec

Models load once, here, before the server binds (so /health answers only when ready). Inference never
runs on the event loop: captions go through the `MicroBatcher`'s worker thread, generation through its
own single thread, and image decoding through a small thread pool; every queue in front of them is
bounded and answers 503 + Retry-After when full. Every error is `{"error": {"message", "type", "param"}}`.

Memory: uploads are decoded two at a time and reduced to what the caption model needs as they decode
(`vlgen.data.images`, the same call `vlgen caption` makes), a request's images may hold at most
--max-request-pixels in all (from their headers, before any decode -> 413), and after every
RELEASE_EVERY_PIXELS decoded pixels freed heap pages go back to the OS (`vlgen.memory.release_memory`).

Giving up: a request that times out (504) or whose client disconnects is dropped where it stands - its
images still queued never reach the model (a batch already in the model finishes), a queued generation
never starts, and a running one stops before its next UNet/VAE block - so the worker is free for the next.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime, and they use
# closures over `settings` (limits in the schema) that string annotations could not resolve.

import asyncio
import base64
import contextlib
import io
import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import anyio
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from vlgen import __version__
from vlgen.errors import ImageLoadError
from vlgen.memory import release_memory
from vlgen.serving.batching import MicroBatcher, QueueFullError
from vlgen.serving.generation import GenerateOptions, GenerationCancelled, TextToImage
from vlgen.serving.middleware import GuardMiddleware
from vlgen.serving.page import PAGE_HEADERS, render_page
from vlgen.serving.responses import APIError, api_error_response, error_docs, error_response
from vlgen.serving.settings import ServeSettings

log = logging.getLogger("vlgen.serving")

HOW_TO_ENABLE_T2I = (
    "text-to-image is not enabled on this server: restart it with "
    "`vlgen serve --t2i-base stabilityai/stable-diffusion-xl-base-1.0` (or a local SDXL directory), "
    "optionally with `--lora DIR`"
)
MAX_PROMPT_CHARS = 2000
DECODE_THREADS = 2  # concurrent image decodes: each may hold up to max_pixels * 3 bytes
# Hand freed heap back to the OS after this many decoded pixels (600 MB of full-size RGB): a full
# gc.collect() costs ~0.1 s with a model loaded, so it runs in the background and coalesced, not per request.
RELEASE_EVERY_PIXELS = 200_000_000


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


_abandoned: set[asyncio.Future] = set()  # cancelled work finishing in the background (kept referenced)


async def _until_disconnected(request: Request) -> None:
    """Returns when the client has gone. Called once the body is read, when `receive()` yields nothing but
    `http.disconnect` (uvicorn sends it when the socket closes, or after the response)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_while_connected(request: Request, work: Any, timeout: float) -> Any:
    """Await `work` (a coroutine or future) for at most `timeout` s while the client stays connected.

    Raises `asyncio.TimeoutError` or `ClientGone`, having cancelled `work`: the caller answers at once and
    `work` unwinds in the background (a decode thread in progress finishes its image first).
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_until_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_abandoned.discard)
    if gone in done:
        if not gone.cancelled():
            gone.exception()  # retrieved, so asyncio does not log it; either way the client is gone
        raise ClientGone
    raise asyncio.TimeoutError


class _MemoryReleaser:
    """Runs `release_memory()` in a thread once RELEASE_EVERY_PIXELS pixels were decoded, one at a time."""

    def __init__(self, every_pixels: int) -> None:
        self.every_pixels = every_pixels
        self.pending = 0
        self.running: asyncio.Future | None = None
        self.runs = 0

    def decoded(self, pixels: int) -> None:
        self.pending += pixels
        if self.pending < self.every_pixels or self.running is not None:
            return
        self.pending = 0
        self.runs += 1
        self.running = asyncio.get_running_loop().run_in_executor(None, release_memory)
        self.running.add_done_callback(self._done)

    def _done(self, future: asyncio.Future) -> None:
        self.running = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("release_memory failed: %s", future.exception())


# -- response models (for the spec; handlers return plain dicts) ----------------------------------------------
class CaptionItem(BaseModel):
    file_name: str
    caption: str
    batch_size: int = Field(description="How many images (from all requests) ran through the model together")


class CaptionResponse(BaseModel):
    model: str
    num_beams: int
    max_new_tokens: int
    captions: list[CaptionItem]
    elapsed_ms: float


class GeneratedImage(BaseModel):
    b64_json: str
    mime_type: Literal["image/png"] = "image/png"


class GenerateResponse(BaseModel):
    model: str
    seed: int
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    lora_scale: float | None
    data: list[GeneratedImage]
    elapsed_ms: float


def _generate_request_model(settings: ServeSettings) -> type[BaseModel]:
    """The /v1/generate body, with this server's limits in the schema (so the spec tells clients)."""

    class GenerateRequest(BaseModel):
        # strict: JSON types are not coerced - `"width": "512"` or `"num_inference_steps": true` is a 422
        # naming the field, not a silent 512 / 1 (an int is still accepted for a float field)
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

        prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
        negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
        seed: int | None = Field(None, ge=0, le=2**63 - 1, description="None: a random seed (sent back as X-Seed)")
        num_inference_steps: int = Field(min(30, settings.max_steps), ge=1, le=settings.max_steps)
        guidance_scale: float = Field(5.0, ge=0.0, le=30.0)
        lora_scale: float | None = Field(
            None, ge=0.0, le=2.0, description="LoRA strength; only with --lora (default 1.0), 0 = base model"
        )
        width: int | None = Field(None, ge=64, le=settings.max_side, multiple_of=8, description="None: native")
        height: int | None = Field(None, ge=64, le=settings.max_side, multiple_of=8, description="None: native")
        response_format: Literal["png", "b64_json"] = "png"

        @field_validator("prompt")
        @classmethod
        def _not_blank(cls, v: str) -> str:
            if not v.strip():
                raise ValueError("prompt is blank")
            return v

    return GenerateRequest


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """'field: problem (got value)' for each error, and the first field's name."""
    parts, first = [], None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "header", "path")]
        field = ".".join(loc) or None
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            parts.append(f"the body is not valid JSON ({ctx.get('error', 'decode error')} at position {loc[0]})")
            first = first or "body"
            continue
        msg = err.get("msg", "invalid")
        got = err.get("input")
        shown = f" (got {got!r})" if isinstance(got, (int, float, str)) and len(repr(got)) <= 60 else ""
        parts.append(f"{field}: {msg}{shown}" if field else f"{msg}{shown}")
        first = first or field
    return "; ".join(parts) or "invalid request", first


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
        # many times slower (we measured 20x on a loaded 2-core box); 1 thread per process avoids that.
        torch.set_num_threads(settings.num_threads)
    if captioner is None or (t2i is None and settings.t2i_base):
        import torch

        device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if captioner is None:
            from vlgen.captioning.registry import load_captioner

            captioner = load_captioner(settings.caption_model, device=device)
        if t2i is None and settings.t2i_base:
            t2i = TextToImage.load(settings.t2i_base, lora=settings.lora, device=device, vae=settings.vae)

    def caption_batch(images: list, key: tuple[int, int]) -> list[str]:
        import torch

        num_beams, max_new_tokens = key
        with torch.inference_mode():
            return captioner.generate(images, num_beams=num_beams, max_new_tokens=max_new_tokens)

    batcher = MicroBatcher(
        caption_batch,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        name="caption",
    )
    decode_limiter = anyio.CapacityLimiter(DECODE_THREADS)
    input_size = getattr(captioner, "input_size", None)  # decode straight to (a margin above) the model's size
    releaser = _MemoryReleaser(RELEASE_EVERY_PIXELS)
    gen_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlgen-generate")
    gen = {"admitted": 0, "done": 0, "cancelled": 0, "ema_s": 0.0}
    abandoned = {"caption": 0}
    started = time.time()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        log.info("vlgen serve ready: %s", settings.public_dict())
        try:
            yield
        finally:
            await batcher.stop()
            gen_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="vlgen",
        version=__version__,
        description="Image captioning and SDXL text-to-image. Errors: `{error: {message, type, param}}`.",
        docs_url=None,  # Swagger UI would load scripts from a CDN; the spec is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.batcher = batcher
    app.add_middleware(
        GuardMiddleware,
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )

    # -- errors: one shape everywhere ----------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return api_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.url.path} does not accept {request.method}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(422, message, param=param)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error (logged on the server)")

    # -- routes ---------------------------------------------------------------------------------------------
    auth_codes = (401,) if settings.api_key else ()
    caption_model_id = str(settings.caption_model)
    page = render_page(
        num_beams=settings.num_beams, max_new_tokens=settings.max_new_tokens, steps=min(30, settings.max_steps)
    )

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - started, 1),
            "auth_required": settings.api_key is not None,
            "caption": {
                "queued": batcher.queued,
                "max_queue": settings.max_queue,
                "max_batch_size": settings.max_batch_size,
                "max_wait_ms": settings.max_wait_ms,
                "abandoned_requests": abandoned["caption"],  # timed out or client gone
                "memory_releases": releaser.runs,
                **batcher.stats.as_dict(),
            },
            "generate": {
                "enabled": t2i is not None,
                "admitted": gen["admitted"],
                "completed": gen["done"],
                "cancelled": gen["cancelled"],  # timed out or client gone
                **({} if t2i is not None else {"how_to_enable": HOW_TO_ENABLE_T2I}),
            },
        }

    @app.get("/v1/models", tags=["meta"], responses=error_docs(*auth_codes))
    async def models() -> dict[str, Any]:
        data = [
            {
                "id": caption_model_id,
                "task": "caption",
                "family": getattr(captioner, "family", None),
                "defaults": {"num_beams": settings.num_beams, "max_new_tokens": settings.max_new_tokens},
                "limits": {
                    "num_beams": settings.max_num_beams,
                    "max_new_tokens": settings.max_new_tokens_limit,
                    "max_files": settings.max_files,
                    "max_pixels": settings.max_pixels,
                    "max_request_pixels": settings.max_request_pixels,
                    "max_body_bytes": settings.max_body_bytes,
                },
                "batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms},
            }
        ]
        if t2i is not None:
            data.append(
                {
                    "id": t2i.base,
                    "task": "generate",
                    "lora": t2i.lora,
                    "default_size": t2i.default_size,
                    "limits": {"num_inference_steps": settings.max_steps, "side": settings.max_side},
                }
            )
        return {"object": "list", "data": data}

    def _bad_image(e: ImageLoadError, param: str) -> APIError:
        return APIError(422, f"not a usable image: {e}", type="invalid_image", param=param)

    async def _probe(data: bytes, name: str, param: str) -> tuple[int, int]:
        from vlgen.data.images import probe_image_bytes

        try:
            return await anyio.to_thread.run_sync(probe_image_bytes, data, name, settings.max_pixels)
        except ImageLoadError as e:
            raise _bad_image(e, param) from None

    async def _decode(data: bytes, name: str, param: str) -> Any:
        from vlgen.data.images import load_image_bytes

        def decode() -> Any:
            return load_image_bytes(data, name, settings.max_pixels, input_size=input_size)

        try:
            return await anyio.to_thread.run_sync(decode, limiter=decode_limiter)
        except ImageLoadError as e:
            raise _bad_image(e, param) from None

    @app.post(
        "/v1/caption",
        tags=["caption"],
        response_model=CaptionResponse,
        responses=error_docs(*auth_codes, 400, 408, 413, 415, 422, 503, 504),
    )
    async def caption(
        request: Request,
        file: Annotated[UploadFile | None, File(description="One image")] = None,
        files: Annotated[list[UploadFile] | None, File(description="Several images")] = None,
        num_beams: Annotated[int, Form(ge=1, le=settings.max_num_beams)] = settings.num_beams,
        max_new_tokens: Annotated[int, Form(ge=1, le=settings.max_new_tokens_limit)] = settings.max_new_tokens,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        uploads = [(u, "file") for u in ([file] if file is not None else [])]
        uploads += [(u, f"files[{i}]") for i, u in enumerate(files or [])]
        if not uploads:
            raise APIError(422, "no image: send one image in the form field `file` or several in `files`", param="file")
        if len(uploads) > settings.max_files:
            raise APIError(
                422, f"{len(uploads)} images in one request; the limit is {settings.max_files}", param="files"
            )

        # Headers first (cheap, nothing decoded): a bad image or a request over the pixel budget is refused
        # before it takes a queue place or a decode thread.
        named = [(await u.read(), u.filename or f"upload {i + 1}", param) for i, (u, param) in enumerate(uploads)]
        sizes = [await _probe(data, name, param) for data, name, param in named]
        pixels = sum(w * h for w, h in sizes)
        if pixels > settings.max_request_pixels:
            raise APIError(
                413,
                f"the {len(sizes)} images hold {pixels:,} pixels in all; this server decodes at most "
                f"{settings.max_request_pixels:,} per request (--max-request-pixels): send fewer or smaller images",
                param="files" if len(sizes) > 1 else uploads[0][1],
            )

        decoded = [0]  # pixels decoded so far (from the headers), for the memory releaser

        async def work() -> list[tuple[str, int]]:
            with batcher.admit(len(uploads)):
                images = []
                for (data, name, param), (w, h) in zip(named, sizes, strict=True):
                    images.append(await _decode(data, name, param))
                    decoded[0] += w * h
                return await batcher.submit(images, key=(num_beams, max_new_tokens))

        try:
            results = await run_while_connected(request, work(), settings.timeout_s)
        except QueueFullError as e:
            raise APIError(503, str(e), headers={"Retry-After": str(e.retry_after_s)}) from None
        except asyncio.TimeoutError:
            abandoned["caption"] += 1
            raise APIError(504, f"captioning took longer than {settings.timeout_s:g} s (--timeout-s)") from None
        except ClientGone:
            abandoned["caption"] += 1
            raise APIError(499, "the client closed the connection; its images were dropped") from None
        except APIError:
            raise
        except Exception:  # the model failed; the batcher logged the traceback
            raise APIError(500, "captioning failed (the error is in the server log)") from None
        finally:
            releaser.decoded(decoded[0])
        return {
            "model": caption_model_id,
            "num_beams": num_beams,
            "max_new_tokens": max_new_tokens,
            "captions": [
                {"file_name": u.filename or f"upload {i + 1}", "caption": text, "batch_size": size}
                for i, ((u, _), (text, size)) in enumerate(zip(uploads, results, strict=True))
            ],
            "elapsed_ms": round(1000 * (time.perf_counter() - t0), 1),
        }

    GenerateRequest = _generate_request_model(settings)

    @app.post(
        "/v1/generate",
        tags=["generate"],
        response_model=GenerateResponse,
        responses={
            200: {
                "description": "`response_format: png` -> the PNG (seed in `X-Seed`); `b64_json` -> JSON",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **error_docs(*auth_codes, 400, 408, 413, 415, 422, 501, 503, 504),
        },
    )
    async def generate(request: Request, body: GenerateRequest) -> Any:  # type: ignore[valid-type]
        if t2i is None:
            raise APIError(501, HOW_TO_ENABLE_T2I)
        if body.lora_scale is not None and t2i.lora is None:
            raise APIError(
                422, "lora_scale given, but this server has no LoRA (start it with --lora DIR)", param="lora_scale"
            )
        if gen["admitted"] >= settings.max_generate_queue:
            retry = max(1, round(gen["ema_s"] or 10.0) * gen["admitted"])
            raise APIError(
                503,
                f"{gen['admitted']} generation requests are already admitted (--max-generate-queue); retry later",
                headers={"Retry-After": str(retry)},
            )
        seed = body.seed if body.seed is not None else secrets.randbelow(2**32)
        opts = GenerateOptions(
            prompt=body.prompt,
            negative_prompt=body.negative_prompt,
            seed=seed,
            num_inference_steps=body.num_inference_steps,
            guidance_scale=body.guidance_scale,
            lora_scale=body.lora_scale,
            width=body.width,
            height=body.height,
        )
        cancel = threading.Event()

        def work() -> tuple[bytes, int, int]:
            image = t2i.generate(opts, should_stop=cancel.is_set)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            return buf.getvalue(), image.width, image.height

        t0 = time.perf_counter()
        gen["admitted"] += 1
        try:
            # A queued call that is cancelled never starts; a running one stops at its next block (cancel).
            future = asyncio.get_running_loop().run_in_executor(gen_executor, work)
            png, width, height = await run_while_connected(request, future, settings.generate_timeout_s)
        except asyncio.TimeoutError:
            cancel.set()
            gen["cancelled"] += 1
            raise APIError(
                504, f"generation took longer than {settings.generate_timeout_s:g} s (--generate-timeout-s)"
            ) from None
        except ClientGone:
            cancel.set()
            gen["cancelled"] += 1
            raise APIError(499, "the client closed the connection; the generation was stopped") from None
        except GenerationCancelled:  # only after a timeout we already answered; kept for completeness
            raise APIError(504, "generation was cancelled") from None
        except Exception:
            log.exception("generation failed for %s", opts)
            raise APIError(500, "generation failed (the error is in the server log)") from None
        finally:
            gen["admitted"] -= 1
        elapsed = time.perf_counter() - t0
        gen["done"] += 1
        gen["ema_s"] = elapsed if gen["done"] == 1 else 0.8 * gen["ema_s"] + 0.2 * elapsed
        lora_scale = (1.0 if body.lora_scale is None else body.lora_scale) if t2i.lora else None
        if body.response_format == "png":
            return Response(png, media_type="image/png", headers={"X-Seed": str(seed)})
        return {
            "model": t2i.base,
            "seed": seed,
            "width": width,
            "height": height,
            "num_inference_steps": body.num_inference_steps,
            "guidance_scale": body.guidance_scale,
            "lora_scale": lora_scale,
            "data": [{"b64_json": base64.b64encode(png).decode("ascii"), "mime_type": "image/png"}],
            "elapsed_ms": round(1000 * elapsed, 1),
        }

    return app
