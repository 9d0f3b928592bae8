"""`vlgen roundtrip prompts|images` (thin wrappers over vlgen.roundtrip)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from vlgen.roundtrip.config import RoundtripConfig
from vlgen.t2i.generate import GenerateSettings

app = typer.Typer(
    help="Round trips scored end to end: prompt -> image -> caption, and image -> caption -> image.",
    no_args_is_help=True,
)

_G = GenerateSettings()  # `vlgen generate`'s defaults, written once there
_R = RoundtripConfig()  # the round trip's own defaults


def _default(name: str) -> str:
    return f"(default: {getattr(_G, name)}, as `vlgen generate`)"


# Options both directions share (typer reads these as parameter defaults).
CAPTIONER = typer.Option(
    ...,
    "--captioner",
    help="Captioner (repeat for more): family name, hub id or directory, as `vlgen caption --model`.",
)
OUT = typer.Option(
    ..., "--out", help="Output folder: images, metadata.jsonl, metrics.json, report.html (rerun resumes)."
)
BASE = typer.Option(
    _G.base,
    "--base",
    "--pretrained-model-name-or-path",
    help="Base: SDXL, SD 1.5 or Flux.1 (hub id, dir or .safetensors).",
)
VAE = typer.Option(None, "--vae", help="Separate VAE (e.g. madebyollin/sdxl-vae-fp16-fix).")
LORA = typer.Option(None, "--lora", help="LoRA: a `vlgen train lora` output dir or .safetensors.")
LORA_SCALE = typer.Option(None, "--lora-scale", help=f"LoRA strength {_default('lora_scale')}.", show_default=False)
SEED = typer.Option(
    None, "--seed", help=f"Seed of the first image, then seed+1, ... {_default('seed')}.", show_default=False
)
STEPS = typer.Option(None, "--num-inference-steps", help=_default("num_inference_steps"), show_default=False)
GUIDANCE = typer.Option(None, "--guidance-scale", help=_default("guidance_scale"), show_default=False)
WIDTH = typer.Option(None, "--width", help="Default: the model's native size.")
HEIGHT = typer.Option(None, "--height", help="Default: the model's native size.")
NEGATIVE = typer.Option(None, "--negative-prompt", help="What the images should not show (default: none).")
BATCH = typer.Option(_R.generation_batch_size, "--batch-size", help="Images per pipeline call.")
NUM_BEAMS = typer.Option(_R.num_beams, "--num-beams", help="Captioners' beam width (1 = greedy).")
MAX_NEW_TOKENS = typer.Option(_R.max_new_tokens, "--max-new-tokens", help="Longest caption, in tokens.")
CAPTION_PROMPT = typer.Option(
    None,
    "--caption-prompt",
    help="The vision-language captioners' prompt (instruction or Florence-2 task token), as `vlgen caption`'s; "
    "other captioners take none (default: each model's own).",
    show_default=False,
)
CAPTION_DTYPE = typer.Option(
    None, "--dtype", "--caption-dtype", help="Captioners' dtype: fp32, bf16 or fp16 (default fp32).", show_default=False
)
CAPTION_BATCH = typer.Option(None, "--caption-batch-size", help="Images per captioner call (default: 32 // num_beams).")
CLIP = typer.Option(None, "--clip-model", help="CLIP model dir or hub id (default: openai/clip-vit-large-patch14).")
DEVICE = typer.Option(None, "--device", help="cpu, cuda ... (default: cuda when available).")
JSON = typer.Option(False, "--json", help="Print the metrics.json object to stdout instead of a table.")


def _config(captioners, base, vae, lora, lora_scale, seed, steps, guidance, width, height, negative, **kw):
    from vlgen.hub import name_model_options

    name_model_options(captioner="--captioner", base="--base", vae="--vae", clip="--clip-model")
    given = dict(base=base, vae=vae, lora=lora, lora_scale=lora_scale, seed=seed, num_inference_steps=steps,
                 guidance_scale=guidance, width=width, height=height, negative_prompt=negative)  # fmt: skip
    generation = dataclasses.replace(GenerateSettings(), **{k: v for k, v in given.items() if v is not None})
    return RoundtripConfig(captioners=list(captioners), generation=generation, **kw)


def _print(res, json_: bool) -> None:
    from rich.table import Table

    from vlgen.cli._console import err, out

    metrics = res.metrics
    for key, why in metrics["settings"].get("unavailable", {}).items():
        err.print(f"note: {key} not computed: {why}", markup=False)
    err.print(
        f"generated {res.generated} and captioned {res.captioned} images in this run; wrote {res.files['report']} "
        f"(and {res.files['metadata'].name}, {res.files['metrics'].name})",
        markup=False,
    )
    if json_:
        out.print(json.dumps(metrics, ensure_ascii=False), markup=False, highlight=False)
        return
    names = list(metrics["captioners"])
    table = Table(title=f"round trip ({metrics['direction']}): {metrics['n']} {metrics['direction']}")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for key in metrics["captioners"][names[0]]:
        values = [metrics["captioners"][n][key] for n in names]
        table.add_row(key, *("-" if v is None else f"{v:.6g}" if key == "Gram" else f"{v:.4f}" for v in values))
    out.print(table)


@app.command("prompts")
def prompts(
    prompts_file: Path = typer.Argument(
        ..., metavar="PROMPTS", help="Text file (one prompt a line) or JSONL with `prompt`."
    ),
    captioner: list[str] = CAPTIONER,
    out_dir: Path = OUT,
    base: str = BASE,
    vae: str | None = VAE,
    lora: str | None = LORA,
    lora_scale: float | None = LORA_SCALE,
    seed: int | None = SEED,
    num_inference_steps: int | None = STEPS,
    guidance_scale: float | None = GUIDANCE,
    width: int | None = WIDTH,
    height: int | None = HEIGHT,
    negative_prompt: str | None = NEGATIVE,
    batch_size: int = BATCH,
    num_beams: int = NUM_BEAMS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    caption_batch_size: int | None = CAPTION_BATCH,
    caption_prompt: str | None = CAPTION_PROMPT,
    caption_dtype: str | None = CAPTION_DTYPE,
    clip_model: str | None = CLIP,
    bertscore_model: str | None = typer.Option(
        None, "--bertscore-model", help="As `vlgen evaluate captions` (default roberta-large, else packaged MiniLM)."
    ),
    device: str | None = DEVICE,
    json_: bool = JSON,
) -> None:
    """Prompt -> image -> caption: generate each prompt, caption it with every captioner, score the recovered
    captions against the prompts (BLEU-1..4, METEOR, ROUGE-L, CIDEr, BERTScore, combined, prompt_similarity)
    and each image against its prompt (CLIP-T)."""
    from vlgen.roundtrip import read_prompts_file, roundtrip_prompts

    cfg = _config(
        captioner, base, vae, lora, lora_scale, seed, num_inference_steps, guidance_scale, width, height,
        negative_prompt, generation_batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
        caption_batch_size=caption_batch_size, caption_prompt=caption_prompt,
        caption_dtype=caption_dtype, clip_model=clip_model, bertscore_model=bertscore_model,
        device=device, source=str(prompts_file),
    )  # fmt: skip
    texts = read_prompts_file(prompts_file)  # before any model loads: a bad line fails at once
    _print(roundtrip_prompts(texts, out_dir, cfg), json_)


@app.command("images")
def images(
    image_dir: Path = typer.Argument(..., metavar="DIR", help="An image folder or a dataset folder (metadata.jsonl)."),
    captioner: list[str] = CAPTIONER,
    out_dir: Path = OUT,
    base: str = BASE,
    vae: str | None = VAE,
    lora: str | None = LORA,
    lora_scale: float | None = LORA_SCALE,
    template: str = typer.Option(
        _R.template,
        "--template",
        help="Prompt made from each caption, e.g. 'a 3D icon in the style of TOK, {caption}'.",
    ),
    seed: int | None = SEED,
    num_inference_steps: int | None = STEPS,
    guidance_scale: float | None = GUIDANCE,
    width: int | None = WIDTH,
    height: int | None = HEIGHT,
    negative_prompt: str | None = NEGATIVE,
    batch_size: int = BATCH,
    num_beams: int = NUM_BEAMS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    caption_batch_size: int | None = CAPTION_BATCH,
    caption_prompt: str | None = CAPTION_PROMPT,
    caption_dtype: str | None = CAPTION_DTYPE,
    clip_model: str | None = CLIP,
    dino_model: str | None = typer.Option(
        None, "--dino-model", help="DINO ViT dir or hub id (default: facebook/dino-vits16)."
    ),
    vgg_weights: str | None = typer.Option(
        None, "--vgg-weights", help="VGG19 state-dict file (or tiny-VGG dir) for Gram (default: torchvision ImageNet)."
    ),
    device: str | None = DEVICE,
    json_: bool = JSON,
) -> None:
    """Image -> caption -> image: caption each image with every captioner, regenerate it from each caption
    (one seed per image, the same for every captioner) and score each regeneration against its own original
    (CLIP-I, DINO, Gram; paired)."""
    from vlgen.roundtrip import roundtrip_images

    cfg = _config(
        captioner, base, vae, lora, lora_scale, seed, num_inference_steps, guidance_scale, width, height,
        negative_prompt, generation_batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
        caption_batch_size=caption_batch_size, caption_prompt=caption_prompt,
        caption_dtype=caption_dtype, template=template, clip_model=clip_model, dino_model=dino_model,
        vgg_weights=vgg_weights, device=device, source=str(image_dir),
    )  # fmt: skip
    _print(roundtrip_images(image_dir, out_dir, cfg), json_)
