"""`vlgen autocaption` and `vlgen generate` (thin wrappers over vlgen.t2i.autocaption / vlgen.t2i.generate)."""

from __future__ import annotations

from pathlib import Path

import typer

from vlgen.cli._tagger_options import CHARACTER_THRESHOLD, GENERAL_THRESHOLD, TAGS_WITH
from vlgen.cli.caption import CAPTION_PROMPT, DTYPE
from vlgen.t2i.generate import GenerateSettings

_G = GenerateSettings()  # `vlgen generate`'s defaults, written once (GenerationParams and GenerateSettings)


def autocaption(
    folder: Path = typer.Argument(
        ...,
        help="Folder of images (its metadata.jsonl is written/updated), or WebDataset shards / parquet (with --out).",
    ),
    model: str = typer.Option(
        "blip",
        "--model",
        help="Captioner: blip, vit-gpt2, cnn-lstm dir, hub id or dir; vision-language models too (Florence-2, "
        "Qwen2-VL, SmolVLM, BLIP-2, LLaVA).",
    ),
    template: str = typer.Option(
        "{caption}",
        "--template",
        help="Prompt template with {caption}, e.g. 'a 3D icon in the style of TOK, {caption}'.",
    ),
    caption_column: str = typer.Option("text", "--caption-column", help="Column to write (e.g. prompt)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recaption images that already have a caption."),
    on_error: str = typer.Option("fail", "--on-error", help="Unreadable images: fail (exit 1) or skip."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per captioner call (default: as `vlgen caption`, 32 // num_beams)."
    ),
    num_beams: int = typer.Option(3, "--num-beams", help="Beam width (1 = greedy)."),
    max_new_tokens: int = typer.Option(
        30, "--max-new-tokens", help="Longest caption, in tokens; a caption cut there gets truncated: true."
    ),
    caption_prompt: str | None = CAPTION_PROMPT,
    dtype: str | None = DTYPE,
    device: str | None = typer.Option(None, "--device", help="cpu, cuda ... (default: cuda when available)."),
    out_file: Path | None = typer.Option(
        None, "--out", help="Metadata JSONL to write instead of FOLDER/metadata.jsonl (needed for shards, parquet)."
    ),
    image_column: str | None = typer.Option(
        None, "--image-column", help="Parquet image column / shard image extension (default: image, jpg, png ...)."
    ),
    tags_with: str | None = TAGS_WITH,
    general_threshold: float | None = GENERAL_THRESHOLD,
    character_threshold: float | None = CHARACTER_THRESHOLD,
) -> None:
    """Caption every image of FOLDER into metadata.jsonl (for `vlgen train lora --caption-column`)."""
    import torch

    from vlgen.cli._console import err, out
    from vlgen.hub import name_model_options
    from vlgen.t2i.autocaption import autocaption as run

    name_model_options(captioner="--model")

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    res = run(
        folder, model=model, template=template, caption_column=caption_column, overwrite=overwrite,
        on_error=on_error, batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens, device=dev,
        out=out_file, image_column=image_column, tags_with=tags_with, general_threshold=general_threshold,
        character_threshold=character_threshold, caption_prompt=caption_prompt, dtype=dtype,
    )  # fmt: skip
    for name, why in res.failed:
        err.print(f"skipped {name}: {why}")
    if res.truncated:
        err.print(
            f"{len(res.truncated)} captions were cut at --max-new-tokens {max_new_tokens} (rows with truncated: true)"
        )
    out.print(f"captioned {len(res.captioned)}, kept {len(res.kept)}, failed {len(res.failed)}: {res.metadata}")


def generate(
    prompts: list[str] = typer.Argument(None, help="Prompts (or use --prompts-file)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder: images + metadata.jsonl (and compare.png)."),
    base: str = typer.Option(
        _G.base, "--base", "--pretrained-model-name-or-path", help="Base model: SDXL, SD 1.5 or Flux.1 (hub id or dir)."
    ),
    family: str | None = typer.Option(
        None, "--family", help="sdxl, sd15 or flux (default: read from the base's model_index.json)."
    ),
    vae: str | None = typer.Option(
        None, "--vae", help="VAE: hub id or directory, e.g. madebyollin/sdxl-vae-fp16-fix (default: the base's own)."
    ),
    lora: str | None = typer.Option(None, "--lora", help="LoRA: a `vlgen train lora` output dir or .safetensors."),
    lora_scale: float = typer.Option(_G.lora_scale, "--lora-scale", help="LoRA strength."),
    compare: bool = typer.Option(False, "--compare", help="Also generate without the LoRA: base/, lora/, compare.png."),
    prompts_file: Path | None = typer.Option(None, "--prompts-file", help="One prompt per line."),
    seed: int = typer.Option(_G.seed, "--seed", help="Seed of the first image (then seed+1, ...)."),
    num_inference_steps: int | None = typer.Option(
        None,
        "--num-inference-steps",
        help="Denoising steps (default: the family's: SDXL 30, SD 1.5 50, Flux-dev 28, schnell 4).",
    ),
    guidance_scale: float | None = typer.Option(
        None,
        "--guidance-scale",
        help="Guidance strength (default: the family's: SDXL 5, SD 1.5 7.5, Flux-dev 3.5).",
    ),
    width: int | None = typer.Option(None, "--width", help="Default: the model's native size."),
    height: int | None = typer.Option(None, "--height", help="Default: the model's native size."),
    num_images_per_prompt: int = typer.Option(
        _G.num_images_per_prompt, "--num-images-per-prompt", help="Images per prompt (seeds go on)."
    ),
    negative_prompt: str | None = typer.Option(None, "--negative-prompt", help="What the images should not show."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda ... (default: cuda when available)."),
) -> None:
    """Generate SDXL, SD 1.5 or Flux.1 images (optionally with a LoRA) and a metadata.jsonl; --compare: base vs LoRA."""
    from vlgen.cli._console import out
    from vlgen.hub import name_model_options

    name_model_options(base="--base", vae="--vae")
    from vlgen.t2i.generate import GenerateSettings, check_settings, read_prompts
    from vlgen.t2i.generate import generate as run

    settings = GenerateSettings(
        base=base, vae=vae, lora=lora, lora_scale=lora_scale, seed=seed, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, width=width, height=height, num_images_per_prompt=num_images_per_prompt,
        device=device, negative_prompt=negative_prompt, family=family,
    )  # fmt: skip
    texts = read_prompts(prompts or [], prompts_file)
    check_settings(settings)
    res = run(texts, out_dir, settings, compare=compare)
    grid = f"; grid {res['grid']}" if res["grid"] else ""
    noun = "image" if res["images"] == 1 else "images"
    out.print(f"generated {res['images']} {noun} in {', '.join(res['dirs'])}{grid}")
