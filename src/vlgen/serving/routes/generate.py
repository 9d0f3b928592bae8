"""POST /v1/generate: JSON prompt, negative_prompt, seed, num_inference_steps, guidance_scale, lora_scale,
width, height, response_format ("png" -> image/png with the seed in X-Seed, "b64_json" -> JSON).

Requests go through the app's `GenerationQueue` (admission, limits, cancellation) to its `TextToImage`.
"""

# No `from __future__ import annotations`: FastAPI reads the route's signature at runtime, and its body model
# carries this server's limits.

import asyncio
import base64
import dataclasses
import io
import logging
import secrets
import time
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request

from vlgen.serving.batching import QueueFullError
from vlgen.serving.generation import HOW_TO_ENABLE_T2I, GenerationCancelled
from vlgen.serving.giving_up import ClientGone
from vlgen.serving.responses import APIError, error_docs
from vlgen.serving.settings import ServeSettings
from vlgen.serving.state import ServerState
from vlgen.t2i.generate import MAX_PROMPT_CHARS, GenerationParams

log = logging.getLogger("vlgen.serving")

_PARAMS = {f.name: f for f in dataclasses.fields(GenerationParams)}


def _param(name: str, default: Any = ..., **override: Any) -> Any:
    """A body field for `GenerationParams.<name>`: the dataclass's default and request limits (its field's
    `metadata["request"]`), with this server's narrower ones (`override`) on top."""
    f = _PARAMS[name]
    return Field(f.default if default is ... else default, **{**f.metadata.get("request", {}), **override})


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


def request_model(settings: ServeSettings) -> type[BaseModel]:
    """The /v1/generate body, with this server's limits in the schema (so the spec tells clients)."""

    class GenerateRequest(BaseModel):
        # strict: JSON types are not coerced - `"width": "512"` or `"num_inference_steps": true` is a 422
        # naming the field, not a silent 512 / 1 (an int is still accepted for a float field)
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

        prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
        # The rest are `GenerationParams` fields (defaults and limits from there), sent as they are to the pipeline.
        negative_prompt: str | None = _param("negative_prompt")
        seed: int | None = _param("seed", None, description="None: a random seed (sent back as X-Seed)")
        num_inference_steps: int | None = _param(
            "num_inference_steps", le=settings.max_steps, description="None: the base family's default (capped)"
        )
        guidance_scale: float | None = _param("guidance_scale", description="None: the base family's default")
        lora_scale: float | None = _param(
            "lora_scale",
            None,
            description=f"LoRA strength; only with --lora (default {GenerationParams.lora_scale}), 0 = base model",
        )
        width: int | None = _param("width", le=settings.max_side, description="None: native")
        height: int | None = _param("height", le=settings.max_side, description="None: native")
        response_format: Literal["png", "b64_json"] = "png"

        @field_validator("prompt")
        @classmethod
        def _not_blank(cls, v: str) -> str:
            if not v.strip():
                raise ValueError("prompt is blank")
            return v

    return GenerateRequest


def router(state: ServerState) -> APIRouter:
    settings, t2i, queue = state.settings, state.t2i, state.generation
    api = APIRouter()
    GenerateRequest = request_model(settings)

    @api.post(
        "/v1/generate",
        tags=["generate"],
        response_model=GenerateResponse,
        responses={
            200: {
                "description": "`response_format: png` -> the PNG (seed in `X-Seed`); `b64_json` -> JSON",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **error_docs(*state.auth_codes, 400, 408, 413, 415, 422, 501, 503, 504),
        },
    )
    async def generate(request: Request, body: GenerateRequest) -> Any:  # type: ignore[valid-type]
        if t2i is None:
            raise APIError(501, HOW_TO_ENABLE_T2I)
        if body.lora_scale is not None and t2i.lora is None:
            raise APIError(
                422, "lora_scale given, but this server has no LoRA (start it with --lora DIR)", param="lora_scale"
            )
        seed = body.seed if body.seed is not None else secrets.randbelow(2**32)
        # None (not sent): the dataclass's default; every body field but prompt and response_format is one of its.
        given = body.model_dump(exclude={"prompt", "response_format"}, exclude_none=True)
        params = GenerationParams(**{**given, "seed": seed})
        steps, guidance = t2i.defaults
        if params.num_inference_steps is None:
            params.num_inference_steps = min(steps, settings.max_steps)
        if params.guidance_scale is None:
            params.guidance_scale = guidance

        def work(should_stop) -> tuple[bytes, int, int]:
            image = t2i.generate(body.prompt, params, should_stop=should_stop)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            return buf.getvalue(), image.width, image.height

        t0 = time.perf_counter()
        try:
            png, width, height = await queue.run(work, request, settings.generate_timeout_s)
        except QueueFullError as e:
            raise APIError(503, str(e), headers={"Retry-After": str(e.retry_after_s)}) from None
        except asyncio.TimeoutError:
            raise APIError(
                504, f"generation took longer than {settings.generate_timeout_s:g} s (--generate-timeout-s)"
            ) from None
        except ClientGone:
            raise APIError(499, "the client closed the connection; the generation was stopped") from None
        except GenerationCancelled:  # only after a timeout we already answered; kept for completeness
            raise APIError(504, "generation was cancelled") from None
        except Exception:
            log.exception("generation failed for %r with %s", body.prompt, params)
            raise APIError(500, "generation failed (the error is in the server log)") from None
        elapsed = time.perf_counter() - t0
        lora_scale = params.lora_scale if t2i.lora else None
        if body.response_format == "png":
            return Response(png, media_type="image/png", headers={"X-Seed": str(seed)})
        return {
            "model": t2i.base,
            "seed": seed,
            "width": width,
            "height": height,
            "num_inference_steps": params.num_inference_steps,
            "guidance_scale": params.guidance_scale,
            "lora_scale": lora_scale,
            "data": [{"b64_json": base64.b64encode(png).decode("ascii"), "mime_type": "image/png"}],
            "elapsed_ms": round(1000 * elapsed, 1),
        }

    return api
