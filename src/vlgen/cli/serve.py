"""`vlgen serve`: the HTTP API and its page (thin wrapper over vlgen.serving.app.create_app + uvicorn)."""

from __future__ import annotations

import typer

from vlgen.cli._console import err
from vlgen.serving.settings import ServeSettings

_D = ServeSettings()  # defaults are written once, in the dataclass


def serve(
    caption_model: str = typer.Option(_D.caption_model, help="blip, vit-gpt2, cnn-lstm dir, a hub id, or a directory."),
    t2i_base: str | None = typer.Option(
        None, help="SDXL base (hub id or directory) to enable /v1/generate: stabilityai/stable-diffusion-xl-base-1.0."
    ),
    lora: str | None = typer.Option(
        None, help="LoRA for --t2i-base: a `vlgen train lora` output dir or .safetensors (as `vlgen generate`)."
    ),
    vae: str | None = typer.Option(
        None, help="VAE for --t2i-base: hub id or directory (default: the base's own; as `vlgen generate`)."
    ),
    host: str = typer.Option(_D.host, help="Address to bind; anything but loopback requires --api-key."),
    port: int = typer.Option(_D.port, help="Port to bind."),
    api_key: str | None = typer.Option(
        None, envvar="VLGEN_API_KEY", help="Require `Authorization: Bearer KEY` (or X-API-Key) on /v1/*."
    ),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
    num_threads: int | None = typer.Option(None, help="torch CPU threads (default: one per core)."),
    max_batch_size: int = typer.Option(_D.max_batch_size, help="Most images per caption batch (1 = off)."),
    max_wait_ms: float = typer.Option(_D.max_wait_ms, help="Longest an image waits for others to join its batch."),
    max_queue: int = typer.Option(_D.max_queue, help="Images admitted at once; more -> 503 + Retry-After."),
    max_generate_queue: int = typer.Option(_D.max_generate_queue, help="Generation requests admitted at once."),
    max_body_mb: float = typer.Option(_D.max_body_mb, help="Largest request body (MiB) -> else 413."),
    max_pixels: int = typer.Option(_D.max_pixels, help="Largest image (width x height), read from the header."),
    max_files: int = typer.Option(_D.max_files, help="Most images in one caption request."),
    max_request_pixels: int = typer.Option(
        _D.max_request_pixels, help="Most pixels (sum of width x height, from headers) in one caption request -> 413."
    ),
    timeout_s: float = typer.Option(_D.timeout_s, help="Per caption request -> else 504."),
    generate_timeout_s: float = typer.Option(_D.generate_timeout_s, help="Per generation request -> else 504."),
    header_timeout_s: float = typer.Option(
        _D.header_timeout_s, help="A request head must arrive within this (s), else 408 and the connection closes."
    ),
    body_timeout_s: float = typer.Option(
        _D.body_timeout_s, help="Longest pause (s) in a request body, else 408 and the connection closes."
    ),
    max_steps: int = typer.Option(_D.max_steps, help="Largest num_inference_steps a request may ask for."),
    max_side: int = typer.Option(_D.max_side, help="Largest width/height a request may ask for."),
    log_level: str = typer.Option("info", help="uvicorn log level (debug, info, warning, error)."),
) -> None:
    """Serve captioning (and optionally SDXL generation) over HTTP, with a small page at /."""
    from vlgen.hub import name_model_options

    name_model_options(captioner="--caption-model", base="--t2i-base", vae="--vae")
    settings = ServeSettings(
        caption_model=caption_model,
        t2i_base=t2i_base,
        lora=lora,
        vae=vae,
        host=host,
        port=port,
        api_key=api_key,
        device=device,
        num_threads=num_threads,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_generate_queue=max_generate_queue,
        max_body_mb=max_body_mb,
        max_pixels=max_pixels,
        max_files=max_files,
        max_request_pixels=max_request_pixels,
        timeout_s=timeout_s,
        generate_timeout_s=generate_timeout_s,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_steps=max_steps,
        max_side=max_side,
    ).check()  # before any model loads: a refused --host costs nothing
    import uvicorn

    from vlgen.serving.app import create_app
    from vlgen.serving.http import uvicorn_options

    err.print(f"loading {settings.caption_model}" + (f" and {settings.t2i_base}" if settings.t2i_base else "") + " ...")
    app = create_app(settings)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    err.print(f"serving on http://{shown}:{settings.port}/ (page), API spec at /openapi.json")
    uvicorn.run(app, **uvicorn_options(settings, log_level))
