"""`vlgen serve`: the HTTP API and its page (thin wrapper over vlgen.serving.app.create_app + uvicorn).

Options are generated from `ServeSettings` (defaults written once, there), as `train`'s are from its config.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from vlgen.cli._options import with_dataclass_options
from vlgen.serving.settings import ServeSettings

# One line each; `with_dataclass_options` appends "[default: ...]" (fields whose default is None say it here).
HELP = {
    "caption_model": "blip, vit-gpt2, cnn-lstm dir, a hub id, or a directory; vision-language models too "
    "(Florence-2, Qwen2-VL, SmolVLM, BLIP-2, LLaVA).",
    "caption_prompt": "Vision-language caption models: the default prompt (instruction or Florence-2 task token); "
    "requests may send their own in the form field caption_prompt. Default: the model's.",
    "dtype": "Caption model dtype: fp32, bf16 or fp16 (default fp32).",
    "t2i_base": "SDXL, SD 1.5 or Flux.1 base (hub id, directory or .safetensors) to enable /v1/generate.",
    "lora": "LoRA for --t2i-base: a `vlgen train lora` output dir or .safetensors (as `vlgen generate`).",
    "vae": "VAE for --t2i-base: hub id or directory (default: the base's own; as `vlgen generate`).",
    "host": "Address to bind; anything but loopback requires --api-key.",
    "port": "Port to bind.",
    "api_key": "Require `Authorization: Bearer KEY` (or X-API-Key) on /v1/*.",
    "device": "cpu, cuda, cuda:1 ... (default: cuda when available).",
    "num_threads": "torch CPU threads (default: one per core).",
    "max_batch_size": "Most images per caption batch (1 = off).",
    "max_wait_ms": "Longest an image waits for others to join its batch.",
    "max_queue": "Images admitted at once; more -> 503 + Retry-After.",
    "max_generate_queue": "Generation requests admitted at once.",
    "max_body_mb": "Largest request body (MiB) -> else 413.",
    "max_pixels": "Largest image (width x height), read from the header.",
    "max_files": "Most images in one caption request.",
    "max_request_pixels": "Most pixels (sum of width x height, from headers) in one caption request -> 413.",
    "timeout_s": "Per caption request -> else 504.",
    "generate_timeout_s": "Per generation request -> else 504.",
    "header_timeout_s": "A request head must arrive within this (s), else 408 and the connection closes.",
    "body_timeout_s": "Longest pause (s) in a request body, else 408 and the connection closes.",
    "max_steps": "Largest num_inference_steps a request may ask for.",
    "max_side": "Largest width/height a request may ask for.",
}
# The caption request defaults and limits are settings of the Python API only (no options for them).
NOT_OPTIONS = ("num_beams", "max_new_tokens", "max_num_beams", "max_new_tokens_limit")
LOG_LEVEL = inspect.Parameter(
    "log_level",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option("info", help="uvicorn log level (debug, info, warning, error)."),
    annotation=str,
)


@with_dataclass_options(
    ServeSettings,
    help=HELP,
    config_option=False,  # serve has no yaml: its options are the whole contract
    exclude=NOT_OPTIONS,
    envvars={"api_key": "VLGEN_API_KEY"},
    extra=(LOG_LEVEL,),
)
def serve(config_file: Path | None, *, log_level: str, **overrides) -> None:
    """Serve captioning (and optionally SDXL / SD 1.5 / Flux.1 generation) over HTTP, with a small page at /."""
    from vlgen.config import resolve_config
    from vlgen.hub import name_model_options

    name_model_options(captioner="--caption-model", base="--t2i-base", vae="--vae")
    # before any model loads: a refused --host costs nothing
    settings = resolve_config(ServeSettings, config_file, overrides).check()
    import uvicorn

    from vlgen.cli._console import err
    from vlgen.serving.app import create_app
    from vlgen.serving.http import uvicorn_options

    err.print(f"loading {settings.caption_model}" + (f" and {settings.t2i_base}" if settings.t2i_base else "") + " ...")
    app = create_app(settings)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    err.print(f"serving on http://{shown}:{settings.port}/ (page), API spec at /openapi.json")
    uvicorn.run(app, **uvicorn_options(settings, log_level))
