"""POST /v1/caption: multipart `file` (one image) and/or `files` (several); `num_beams`, `max_new_tokens`, and for
vision-language caption models `caption_prompt` (the instruction or Florence-2 task token; default: the server's).
A caption that hit `max_new_tokens` says `"truncated": true`.

Images go through the app's `MicroBatcher` (one worker thread, batched across requests). Memory: uploads are
decoded DECODE_THREADS at a time and reduced to what the caption model needs as they decode
(`vlgen.data.images`, the same call `vlgen caption` makes), a request's images may hold at most
--max-request-pixels in all (from their headers, before any decode -> 413), and decoded pixels are counted
for the app's `MemoryReleaser`.
"""

# No `from __future__ import annotations`: FastAPI reads the route's signature at runtime, and its limits are
# this server's settings (closures that string annotations could not resolve).

import asyncio
import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field
from starlette.requests import Request

from vlgen.captioning.vlm_config import FAMILY as VLM_FAMILY
from vlgen.errors import ConfigError, ImageLoadError
from vlgen.serving.batching import QueueFullError
from vlgen.serving.giving_up import ClientGone, run_while_connected
from vlgen.serving.responses import APIError, error_docs
from vlgen.serving.state import ServerState

MAX_PROMPT_CHARS = 2000  # a caption instruction, not a document
DECODE_THREADS = 2  # concurrent image decodes: each may hold up to max_pixels * 3 bytes


class CaptionItem(BaseModel):
    file_name: str
    caption: str
    batch_size: int = Field(description="How many images (from all requests) ran through the model together")
    truncated: bool | None = Field(None, description="true when the caption hit max_new_tokens (else absent)")


class CaptionResponse(BaseModel):
    model: str
    num_beams: int
    max_new_tokens: int
    caption_prompt: str | None = Field(None, description="The prompt used (vision-language models only)")
    captions: list[CaptionItem]
    elapsed_ms: float


def _bad_image(e: ImageLoadError, param: str) -> APIError:
    return APIError(422, f"not a usable image: {e}", type="invalid_image", param=param)


def router(state: ServerState) -> APIRouter:
    settings, batcher = state.settings, state.batcher
    api = APIRouter()
    decode_limiter = anyio.CapacityLimiter(DECODE_THREADS)
    input_size = getattr(state.captioner, "input_size", None)  # decode straight to (a margin above) its size
    model_id = str(settings.caption_model)

    def check_prompt(prompt: str | None) -> str | None:
        """The request's caption_prompt, or 422 when this model takes none or refuses it (before any queueing)."""
        if prompt is None:
            return None
        if getattr(state.captioner, "family", None) != VLM_FAMILY:
            raise APIError(422, f"caption_prompt: the caption model {model_id} takes no prompt", param="caption_prompt")
        try:
            return state.captioner.check_prompt(prompt)
        except ConfigError as e:
            raise APIError(422, f"caption_prompt: {e}", param="caption_prompt") from None

    async def probe(data: bytes, name: str, param: str) -> tuple[int, int]:
        from vlgen.data.images import probe_image_bytes

        try:
            return await anyio.to_thread.run_sync(probe_image_bytes, data, name, settings.max_pixels)
        except ImageLoadError as e:
            raise _bad_image(e, param) from None

    async def decode(data: bytes, name: str, param: str) -> Any:
        from vlgen.data import images

        def load() -> Any:  # the decode `vlgen caption`'s input workers run: one image, one caption from both
            return images.decode_image(data, name, settings.max_pixels, input_size=input_size)

        try:
            return await anyio.to_thread.run_sync(load, limiter=decode_limiter)
        except ImageLoadError as e:
            raise _bad_image(e, param) from None

    @api.post(
        "/v1/caption",
        tags=["caption"],
        response_model=CaptionResponse,
        response_model_exclude_none=True,  # truncated / caption_prompt only where they apply
        responses=error_docs(*state.auth_codes, 400, 408, 413, 415, 422, 503, 504),
    )
    async def caption(
        request: Request,
        file: Annotated[UploadFile | None, File(description="One image")] = None,
        files: Annotated[list[UploadFile] | None, File(description="Several images")] = None,
        num_beams: Annotated[int, Form(ge=1, le=settings.max_num_beams)] = settings.num_beams,
        max_new_tokens: Annotated[int, Form(ge=1, le=settings.max_new_tokens_limit)] = settings.max_new_tokens,
        caption_prompt: Annotated[
            str | None, Form(max_length=MAX_PROMPT_CHARS, description="Vision-language models: the instruction")
        ] = None,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        prompt = check_prompt(caption_prompt)
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
        sizes = [await probe(data, name, param) for data, name, param in named]
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
                    images.append(await decode(data, name, param))
                    decoded[0] += w * h
                return await batcher.submit(images, key=(num_beams, max_new_tokens, prompt))

        try:
            results = await run_while_connected(request, work(), settings.timeout_s)
        except QueueFullError as e:
            raise APIError(503, str(e), headers={"Retry-After": str(e.retry_after_s)}) from None
        except asyncio.TimeoutError:
            state.abandoned_captions += 1
            raise APIError(504, f"captioning took longer than {settings.timeout_s:g} s (--timeout-s)") from None
        except ClientGone:
            state.abandoned_captions += 1
            raise APIError(499, "the client closed the connection; its images were dropped") from None
        except APIError:
            raise
        except Exception:  # the model failed; the batcher logged the traceback
            raise APIError(500, "captioning failed (the error is in the server log)") from None
        finally:
            state.releaser.decoded(decoded[0])
        return {
            "model": model_id,
            "num_beams": num_beams,
            "max_new_tokens": max_new_tokens,
            "caption_prompt": prompt if prompt is not None else getattr(state.captioner, "prompt", None),
            "captions": [
                {"file_name": u.filename or f"upload {i + 1}", **row, "batch_size": size}
                for i, ((u, _), (row, size)) in enumerate(zip(uploads, results, strict=True))
            ],
            "elapsed_ms": round(1000 * (time.perf_counter() - t0), 1),
        }

    return api
