"""GET / (the page), GET /health (no key needed) and GET /v1/models."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from vlgen import __version__
from vlgen.serving.generation import HOW_TO_ENABLE_T2I
from vlgen.serving.page import PAGE_HEADERS, render_page
from vlgen.serving.responses import error_docs
from vlgen.serving.state import ServerState


def router(state: ServerState) -> APIRouter:
    settings, batcher, generation, t2i = state.settings, state.batcher, state.generation, state.t2i
    api = APIRouter()
    page = render_page(
        num_beams=settings.num_beams,
        max_new_tokens=settings.max_new_tokens,
        # what a request without them gets: the base family's defaults (SDXL's when no base is loaded)
        steps=min(t2i.defaults[0] if t2i is not None else 30, settings.max_steps),
        guidance_scale=t2i.defaults[1] if t2i is not None else 5.0,
    )

    @api.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @api.get("/health", tags=["meta"])
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - state.started, 1),
            "auth_required": settings.api_key is not None,
            "caption": {
                "queued": batcher.queued,
                "max_queue": settings.max_queue,
                "max_batch_size": settings.max_batch_size,
                "max_wait_ms": settings.max_wait_ms,
                "abandoned_requests": state.abandoned_captions,  # timed out or client gone
                "memory_releases": state.releaser.runs,
                **batcher.stats.as_dict(),
            },
            "generate": {
                "enabled": t2i is not None,
                **generation.stats(),  # admitted, completed, cancelled (timed out or client gone)
                **({} if t2i is not None else {"how_to_enable": HOW_TO_ENABLE_T2I}),
            },
        }

    @api.get("/v1/models", tags=["meta"], responses=error_docs(*state.auth_codes))
    async def models() -> dict[str, Any]:
        data = [
            {
                "id": str(settings.caption_model),
                "task": "caption",
                "family": getattr(state.captioner, "family", None),
                "defaults": {
                    "num_beams": settings.num_beams,
                    "max_new_tokens": settings.max_new_tokens,
                    # vision-language caption models: the prompt a request without caption_prompt gets
                    **({"caption_prompt": state.captioner.prompt} if hasattr(state.captioner, "prompt") else {}),
                },
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

    return api
