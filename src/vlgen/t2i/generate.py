"""`vlgen generate`: SDXL images (optionally with a LoRA), a metadata.jsonl beside them, base-vs-LoRA grids.

Output (an imagefolder, so `vlgen evaluate images OUT` reads it - `file_name` + `prompt`):
    OUT/0000.png ...  OUT/metadata.jsonl       one row per image: file_name, prompt, seed, settings, model, lora
With `--compare` (the same prompts and seeds with and without the LoRA):
    OUT/base/*.png + metadata.jsonl, OUT/lora/*.png + metadata.jsonl, OUT/compare.png (a row per image:
    base | LoRA). Each set is its own imagefolder, so the two can be scored separately.
Image k of prompt i uses seed `seed + i * num_images_per_prompt + k` on a CPU generator: the same
numbers on every device, and one image can be regenerated alone from its row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlgen.errors import ConfigError
from vlgen.fileio import atomic_write_bytes, check_output_dir, write_jsonl
from vlgen.hub import DEFAULT_MODELS

METADATA_NAME = "metadata.jsonl"


MAX_PROMPT_CHARS = 2000  # the longest prompt or negative prompt an HTTP request may send


def _request_limits(**limits: Any) -> dict[str, Any]:
    """A field's `metadata`: the range a /v1/generate request may ask for (pydantic `Field` constraints)."""
    return {"request": limits}


@dataclass
class GenerationParams:
    """How one image is made from its prompt: the parameters every caller shares, with their defaults written
    here only - `vlgen generate` (inside `GenerateSettings`), `text_to_image`, `vlgen roundtrip` and the
    server's /v1/generate (its request model takes its defaults and limits from these fields).

    `metadata["request"]`: the range an HTTP request may ask for; the server narrows steps and sides further
    (`--max-steps`, `--max-side`). The library and the CLI take anything the pipeline takes (`check_settings`).

    Example::

        from vlgen.t2i.generate import GenerationParams

        params = GenerationParams(seed=7, num_inference_steps=25, guidance_scale=6.0)
    """

    seed: int = field(default=0, metadata=_request_limits(ge=0, le=2**63 - 1))
    # None: the base family's default (vlgen.t2i.families): SDXL 30 steps at guidance 5.0, SD 1.5 50 at 7.5,
    # FLUX.1-dev 28 at 3.5, FLUX.1-schnell 4 without guidance
    num_inference_steps: int | None = field(default=None, metadata=_request_limits(ge=1))
    guidance_scale: float | None = field(default=None, metadata=_request_limits(ge=0.0, le=30.0))
    # None: the base's native size (1024 for SDXL and Flux, 512 for SD 1.5)
    width: int | None = field(default=None, metadata=_request_limits(ge=64, multiple_of=8))
    height: int | None = field(default=None, metadata=_request_limits(ge=64, multiple_of=8))
    negative_prompt: str | None = field(default=None, metadata=_request_limits(max_length=MAX_PROMPT_CHARS))
    lora_scale: float = field(default=1.0, metadata=_request_limits(ge=0.0, le=2.0))  # 0.0 = the base model


@dataclass
class GenerateSettings(GenerationParams):
    """`vlgen generate` options, for `generate(prompts, out, settings)` (and `RoundtripConfig.generation`):
    the models and the image count on top of the `GenerationParams` of every image.

    Example::

        import vlgen

        settings = vlgen.GenerateSettings(lora="runs/3dicon", num_inference_steps=25, guidance_scale=5.0, seed=0)
    """

    base: str = DEFAULT_MODELS["sdxl"]
    family: str | None = None  # sdxl, sd15, flux; None: read from the base's model_index.json
    vae: str | None = None  # None: the base's own VAE
    lora: str | None = None  # a training output directory or a .safetensors file (diffusers or kohya keys)
    num_images_per_prompt: int = 1
    device: str | None = None  # default: cuda if available


def read_prompts(prompts: list[str], prompts_file: str | Path | None) -> list[str]:
    """Prompts from the command line, then one per non-empty line of --prompts-file."""
    out = [p for p in prompts if p.strip()]
    if prompts_file is not None:
        path = Path(prompts_file)
        if not path.is_file():
            raise ConfigError(f"--prompts-file {path}: no such file")
        out += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not out:
        raise ConfigError("no prompts: give PROMPT arguments or --prompts-file")
    return out


def check_settings(s: GenerationParams) -> None:
    """ConfigError naming the option for a value the pipeline cannot take (a `GenerateSettings`' models too)."""
    for name in ("width", "height"):
        v = getattr(s, name)
        if v is not None and (v < 8 or v % 8):
            raise ConfigError(f"--{name} must be a positive multiple of 8, got {v}")
    if s.num_inference_steps is not None and s.num_inference_steps < 1:
        raise ConfigError(f"--num-inference-steps must be at least 1, got {s.num_inference_steps}")
    if not isinstance(s, GenerateSettings):
        return
    if s.num_images_per_prompt < 1:
        raise ConfigError(f"--num-images-per-prompt must be at least 1, got {s.num_images_per_prompt}")
    if s.lora is not None:
        lora_file(s.lora)


def lora_file(ref: str | Path) -> tuple[Path, str]:
    """(directory, weight_name) of a LoRA given as a training output dir or a .safetensors file."""
    from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME

    path = Path(ref)
    if path.is_file():
        return path.parent, path.name
    if (path / DIFFUSERS_WEIGHT_NAME).is_file():
        return path, DIFFUSERS_WEIGHT_NAME
    raise ConfigError(f"--lora {ref}: no such file, and no directory with {DIFFUSERS_WEIGHT_NAME}")


def load_pipeline(base: str, vae: str | None = None, device: str | None = None, family: str | None = None):
    """The base's diffusers pipeline (StableDiffusionXLPipeline, StableDiffusionPipeline, FluxPipeline: its
    family, read from model_index.json unless `family` says) from a hub id or directory; fp16 on CUDA (bf16 for
    Flux, whose activations overflow fp16), fp32 on CPU.

    `vae` None: the base's own VAE; `device` None: cuda when available. The pipeline is diffusers' own: call it
    with diffusers' arguments (`num_inference_steps`, `guidance_scale`, `generator`, ...).

    Example::

        import torch
        import vlgen

        pipe = vlgen.load_pipeline("stabilityai/stable-diffusion-xl-base-1.0", vae="madebyollin/sdxl-vae-fp16-fix")
        image = pipe("a red circle", num_inference_steps=20, generator=torch.Generator().manual_seed(0)).images[0]
    """
    import diffusers
    import torch

    from vlgen.t2i.conditioning import load_vae, resolve_vae
    from vlgen.t2i.families import family_of_path, resolve_base

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = resolve_base(base)  # a folder, hub id or single .safetensors file
    fam = family_of_path(path, family)
    half = torch.bfloat16 if fam.name == "flux" else torch.float16
    dtype = half if device.startswith("cuda") else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if resolve_vae(vae) is not None:
        kwargs["vae"] = load_vae(resolve_vae(vae), path).to(dtype)
    pipe = getattr(diffusers, fam.pipeline_class).from_pretrained(path, **kwargs).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


LORA_ADAPTER = "lora"


def pipeline_family(pipe):
    """The family (vlgen.t2i.families) of a loaded pipeline, from its class."""
    from vlgen.t2i.families import FAMILIES, PIPELINE_CLASSES

    name = type(pipe).__name__
    if name not in PIPELINE_CLASSES:
        raise ConfigError(f"{name}: not a text-to-image pipeline vlgen knows ({', '.join(PIPELINE_CLASSES)})")
    return FAMILIES[PIPELINE_CLASSES[name]]


def family_defaults(pipe, num_inference_steps: int | None, guidance_scale: float | None) -> tuple[int, float]:
    """(steps, guidance) with None replaced by the pipeline's family default ("family default")."""
    fam = pipeline_family(pipe)
    d = fam.generation_defaults(getattr(pipe, fam.denoiser_name).config)
    return (
        d.num_inference_steps if num_inference_steps is None else num_inference_steps,
        d.guidance_scale if guidance_scale is None else guidance_scale,
    )


def apply_lora(pipe, ref: str | Path, scale: float) -> None:
    """Load a LoRA (see `lora_file`) as the pipeline's one adapter, at strength `scale`."""
    folder, weight_name = lora_file(ref)
    pipe.load_lora_weights(folder, weight_name=weight_name, adapter_name=LORA_ADAPTER)
    set_lora_scale(pipe, scale)


def set_lora_scale(pipe, scale: float) -> None:
    """The strength of the adapter `apply_lora` loaded, for every later call (0.0 = the base model).

    Pipeline state, not per call: a caller sharing one pipeline between threads (the server) sets it and
    generates under one lock.
    """
    pipe.set_adapters([LORA_ADAPTER], adapter_weights=[scale])


def generate_image(
    pipe,
    prompt: str,
    *,
    seed: int,
    negative_prompt: str | None = GenerationParams.negative_prompt,
    num_inference_steps: int | None = GenerationParams.num_inference_steps,
    guidance_scale: float | None = GenerationParams.guidance_scale,
    width: int | None = GenerationParams.width,
    height: int | None = GenerationParams.height,
    callback_on_step_end=None,
):
    """One PIL image. The noise comes from a CPU generator seeded with `seed`: the same numbers on every
    device, so one image can be regenerated alone. None sizes: the base's native size; None steps/guidance: its
    family's defaults. The one place that calls the pipeline for `vlgen generate` and the server's
    /v1/generate, so both give the same image."""
    import torch

    num_inference_steps, guidance_scale = family_defaults(pipe, num_inference_steps, guidance_scale)
    return pipe(
        prompt,
        negative_prompt=negative_prompt,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        generator=torch.Generator().manual_seed(seed),
        callback_on_step_end=callback_on_step_end,
    ).images[0]


def generate_images(
    pipe,
    prompts: list[str],
    *,
    seeds: list[int],
    negative_prompt: str | None = GenerationParams.negative_prompt,
    num_inference_steps: int | None = GenerationParams.num_inference_steps,
    guidance_scale: float | None = GenerationParams.guidance_scale,
    width: int | None = GenerationParams.width,
    height: int | None = GenerationParams.height,
) -> list:
    """One PIL image per prompt from one pipeline call (a batch: one UNet call per step for all the prompts).

    Image i's noise comes from a CPU generator seeded with `seeds[i]`, exactly as `generate_image`'s; the
    batched UNet arithmetic may differ from a batch of one in the last bit (measured: at most 1 of 255 per
    pixel on tiny SDXL), so a caller that must reproduce its own images keeps its batches the same.
    """
    import torch

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    num_inference_steps, guidance_scale = family_defaults(pipe, num_inference_steps, guidance_scale)
    return pipe(
        list(prompts),
        negative_prompt=negative_prompt,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        width=width,
        height=height,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    ).images


def _run(pipe, prompts: list[str], s: GenerateSettings, out_dir: Path, model: str, prefix: str = "") -> list[dict]:
    """Generate every image, write it and return its metadata rows (file_name relative to out_dir)."""
    from vlgen.progress import track

    rows = []
    settings = {k: v for k, v in asdict(s).items() if k not in ("device", "lora")}
    # the values used, not None ("family default"), so a row regenerates its image on its own
    settings["num_inference_steps"], settings["guidance_scale"] = family_defaults(
        pipe, s.num_inference_steps, s.guidance_scale
    )
    settings["family"] = pipeline_family(pipe).name
    jobs = [(i, k, p) for i, p in enumerate(prompts) for k in range(s.num_images_per_prompt)]
    for i, k, prompt in track(jobs, f"generating ({model})"):
        seed = s.seed + i * s.num_images_per_prompt + k
        image = generate_image(
            pipe,
            prompt,
            seed=seed,
            negative_prompt=s.negative_prompt,
            num_inference_steps=s.num_inference_steps,
            guidance_scale=s.guidance_scale,
            width=s.width,
            height=s.height,
        )
        name = f"{prefix}{len(rows):04d}.png"
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        atomic_write_bytes(out_dir / name, buf.getvalue())
        rows.append(
            {"file_name": name, "prompt": prompt, **settings, "seed": seed, "model": model,
             "lora": str(s.lora) if model == "lora" else None, "width": image.width, "height": image.height}
        )  # fmt: skip
    write_jsonl(out_dir / METADATA_NAME, rows)
    return rows


def generate(prompts: list[str], out: str | Path, settings: GenerateSettings, compare: bool = False) -> dict:
    """Library entry point behind `vlgen generate`; returns {"images": n, "dirs": [...], "grid": path|None}.

    Writes `out` as `vlgen generate --out` does (PNGs + metadata.jsonl, an imagefolder that `vlgen evaluate
    images` reads); with `compare=True` (needs `settings.lora`) `out/base`, `out/lora` and `out/compare.png`.

    Example::

        import vlgen

        settings = vlgen.GenerateSettings(base="stabilityai/stable-diffusion-xl-base-1.0", num_inference_steps=20)
        result = vlgen.generate(["a red circle", "a blue square"], "gen/", settings)
        print(result["images"], result["dirs"])  # 2 ['gen']
    """
    check_settings(settings)
    if compare and settings.lora is None:
        raise ConfigError("--compare needs --lora (it compares the base model with and without it)")
    out = Path(out)
    check_output_dir(out, "--out")  # before the pipeline loads
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(settings.base, settings.vae, settings.device, settings.family)
    if not compare:
        if settings.lora is not None:
            apply_lora(pipe, settings.lora, settings.lora_scale)
        rows = _run(pipe, prompts, settings, out, "lora" if settings.lora else "base")
        return {"images": len(rows), "dirs": [str(out)], "grid": None}
    base_rows = _run(pipe, prompts, settings, out / "base", "base")
    apply_lora(pipe, settings.lora, settings.lora_scale)
    lora_rows = _run(pipe, prompts, settings, out / "lora", "lora")
    from PIL import Image

    from vlgen.t2i.grid import common_prefix_words, image_grid

    grid_rows = [
        [Image.open(out / "base" / a["file_name"]), Image.open(out / "lora" / b["file_name"])]
        for a, b in zip(base_rows, lora_rows, strict=True)
    ]
    # Prompts often share a long head ("a 3D icon in the style of TOK, ..."): it goes once into the title, and
    # each row shows the part that differs, so a narrow label column does not cut every row to the same words.
    shared = common_prefix_words([r["prompt"] for r in base_rows])
    labels = [f"seed {r['seed']}: " + ("\u2026" if shared else "") + r["prompt"][len(shared) :] for r in base_rows]
    title = f"{shared.rstrip()} \u2026" if shared else None
    image_grid(grid_rows, row_labels=labels, col_labels=["base", "LoRA"], title=title).save(out / "compare.png")
    return {
        "images": 2 * len(base_rows),
        "dirs": [str(out / "base"), str(out / "lora")],
        "grid": str(out / "compare.png"),
    }


def text_to_image(
    prompts: str | Sequence[str],
    *,
    base: str = GenerateSettings.base,
    vae: str | None = GenerateSettings.vae,
    lora: str | Path | None = GenerateSettings.lora,
    lora_scale: float = GenerateSettings.lora_scale,
    seed: int = GenerateSettings.seed,
    negative_prompt: str | None = GenerateSettings.negative_prompt,
    num_inference_steps: int | None = GenerateSettings.num_inference_steps,
    guidance_scale: float | None = GenerateSettings.guidance_scale,
    width: int | None = GenerateSettings.width,
    height: int | None = GenerateSettings.height,
    device: str | None = GenerateSettings.device,
    family: str | None = GenerateSettings.family,
) -> list:
    """One PIL image per prompt, in memory: `vlgen generate` without the files (same defaults, GenerateSettings').

    Image i uses seed `seed + i` on a CPU generator, so it is the image `vlgen generate` writes for prompt i
    with the same settings. `base`/`vae`: hub ids or directories (`vae` None: the base's own VAE); `lora`: a
    `train_lora` output directory or a .safetensors file (diffusers or kohya keys), at strength `lora_scale`;
    `width`/`height` None: the UNet's native size. Loads the pipeline on every call: to reuse one, call
    `pipe = load_pipeline(base, vae)` (and `apply_lora(pipe, lora, scale)`) once and `pipe(prompt, ...)` as
    diffusers documents it.

    Example::

        import vlgen

        images = vlgen.text_to_image(
            ["a 3D icon of a rocket in the style of TOK", "a 3D icon of a cat in the style of TOK"],
            base="stabilityai/stable-diffusion-xl-base-1.0", vae="madebyollin/sdxl-vae-fp16-fix",
            lora="runs/3dicon", num_inference_steps=25, guidance_scale=5.0, seed=0,
        )
        images[0].save("rocket.png")
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ConfigError("prompts must be a non-empty list of non-empty strings")
    settings = GenerateSettings(
        base=base, vae=vae, lora=None if lora is None else str(lora), lora_scale=lora_scale, seed=seed,
        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, width=width, height=height,
        device=device, negative_prompt=negative_prompt, family=family,
    )  # fmt: skip
    check_settings(settings)  # before the pipeline loads
    pipe = load_pipeline(settings.base, settings.vae, settings.device, settings.family)
    if settings.lora is not None:
        apply_lora(pipe, settings.lora, settings.lora_scale)
    images = []
    for i, prompt in enumerate(prompts):
        image = generate_image(
            pipe, prompt, seed=settings.seed + i, negative_prompt=settings.negative_prompt,
            num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
            width=settings.width, height=settings.height,
        )  # fmt: skip
        images.append(image)
    return images
