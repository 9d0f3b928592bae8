"""The demo's text -> image half (issue 7): style set -> autocaption -> base model -> style LoRA -> generate
base vs base+LoRA with the same prompts and seeds -> image metrics against the style set.

Every stage is a real `vlgen` command, except the fuse step, which goes through the public library
function `vlgen.t2i.fuse.fuse_lora_into_base` (there is no `vlgen lora fuse` command yet).

Offline there are no pretrained weights, so:
- the base is `vlgen tiny sdxl --fit-vae DATA` (the real SDXL pipeline classes at toy width): its VAE is
  fitted as an autoencoder on the captioning set's training images (never on the style set), with colour
  augmentation so that it also reconstructs colours outside that set's palette, and latents decode to
  pictures; its UNet and text encoders are random, and a LoRA trained on the shape captions is fused in, so
  the base draws (blurry) shapes on a plain background before any style is taught;
- both LoRAs adapt the attention projections *and* the convolutions (`vlgen train lora --lora-layers`,
  DemoConfig.lora_layers): the tiny UNet's full-resolution level has no attention, and with attention-only
  LoRAs the training loss stayed ~1.0 (measured: shapes/style losses ~0.11 with conv layers);
- Gram uses a VGG19 with seeded random init (no ImageNet weights offline): it still compares the
  colour/texture statistics of the feature maps, but it is not the perceptual style metric of Gatys et al.;
- CLIP-T/CLIP-I/DINO run on `vlgen tiny clip`/`vlgen tiny dino`: a pipeline check, not meaningful values.
The report states the measured Gram distances of base and base + LoRA and whether the LoRA lowered it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STYLE_TEMPLATE = "a 3D icon in the style of TOK, {caption}"
IMAGE_METRICS = ("Gram", "CLIP-T", "CLIP-I", "DINO")


def style_prompts(data: Path, n: int) -> list[str]:
    """The first `n` test-split captions of the captioning set, in the style-prompt template."""
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines() if line.strip()]
    return [STYLE_TEMPLATE.format(caption=r["text"]) for r in rows if r.get("split") == "test"][:n]


def run_t2i(
    out: Path,
    cfg: Any,
    data: Path,
    captioner: Path,
    run: Callable[[list[str], list[str]], None],
    timings: dict[str, float],
    commands: list[str],
) -> dict[str, Any]:
    """Run the text -> image stages under `out`; returns what the report needs."""
    from vlgen.t2i.fuse import fuse_lora_into_base

    style, models = out / "data" / "style", out / "models"
    s = str(cfg.seed)
    t = time.perf_counter()
    if not (style / "metadata.jsonl").is_file():
        run(["data", "synth", str(style), "--n", str(cfg.n_style), "--style", "--seed", s], commands)
    run(["autocaption", str(style), "--model", str(captioner), "--template", STYLE_TEMPLATE]
        + ["--caption-column", "prompt", "--overwrite", "--device", "cpu"], commands)  # fmt: skip
    timings["style set + autocaption"] = time.perf_counter() - t

    t = time.perf_counter()
    # The VAE is fitted on the captioning set's training images (never the style set): a random VAE decodes
    # every latent to coloured noise, which would hide whatever the UNet and the LoRA learn.
    run(["tiny", "sdxl", str(models / "tiny-sdxl"), "--seed", s, "--fit-vae", str(data)]
        + ["--vae-steps", str(cfg.vae_steps)], commands)  # fmt: skip
    timings["tiny SDXL (VAE fitted on the captioning set)"] = time.perf_counter() - t
    t = time.perf_counter()
    for name in ("clip", "dino"):
        run(["tiny", name, str(models / f"tiny-{name}"), "--seed", s], commands)
    vgg = models / "vgg19-random-init"
    run(["tiny", "vgg19", str(vgg), "--seed", s], commands)
    timings["tiny models"] = time.perf_counter() - t

    # --lora-layers: the attention projections and the ResNet/IO convolutions (LoCon). The tiny UNet's 8x8 level
    # has no attention at all, so an attention-only LoRA cannot change the full-resolution path.
    lora_common = ["--vae", "none", "--resolution", "64", "--seed", s, "--cpu", "--lora-layers", cfg.lora_layers]
    lora_common += ["--overwrite-output-dir"]  # a rerun of the demo retrains its LoRAs from scratch
    t = time.perf_counter()
    run(["train", "lora", "--pretrained-model-name-or-path", str(models / "tiny-sdxl"), "--data", str(data)]
        + ["--caption-column", "text", "--rank", str(cfg.shapes_rank), "--max-train-steps", str(cfg.shapes_steps)]
        + ["--learning-rate", str(cfg.shapes_learning_rate), "--train-batch-size", "8"]
        + ["--out", str(out / "shapes-lora")]
        + lora_common, commands)  # fmt: skip
    base = models / "base"
    fuse_lora_into_base(models / "tiny-sdxl", out / "shapes-lora", base, overwrite=True)
    commands.append(
        f"# python: vlgen.t2i.fuse.fuse_lora_into_base({models / 'tiny-sdxl'}, {out / 'shapes-lora'}, {base})"
    )
    timings["base model (shapes LoRA, fused)"] = time.perf_counter() - t

    t = time.perf_counter()
    lora = out / "style-lora"
    run(["train", "lora", "--pretrained-model-name-or-path", str(base), "--data", str(style)]
        + ["--caption-column", "prompt", "--rank", str(cfg.style_rank), "--max-train-steps", str(cfg.style_steps)]
        + ["--learning-rate", str(cfg.style_learning_rate), "--train-batch-size", "4", "--out", str(lora)]
        + lora_common, commands)  # fmt: skip
    timings["train style LoRA"] = time.perf_counter() - t

    prompts = style_prompts(data, cfg.n_prompts)
    prompts_file = out / "t2i-prompts.txt"
    prompts_file.write_text("".join(p + "\n" for p in prompts))
    gen = out / "gen"
    t = time.perf_counter()
    run(["generate", "--prompts-file", str(prompts_file), "--base", str(base), "--lora", str(lora), "--compare"]
        + ["--out", str(gen), "--num-inference-steps", str(cfg.num_inference_steps), "--seed", s]
        + ["--device", "cpu"], commands)  # fmt: skip
    timings["generate base vs LoRA"] = time.perf_counter() - t

    scores: dict[str, dict] = {}
    for name in ("base", "lora"):
        t = time.perf_counter()
        run(["evaluate", "images", str(gen / name), "--references", str(style), "--metrics", ",".join(IMAGE_METRICS)]
            + ["--clip-model", str(models / "tiny-clip"), "--dino-model", str(models / "tiny-dino")]
            + ["--vgg-weights", str(vgg), "--gram-size", "64", "--out", str(out / f"eval-images-{name}")],
            commands)  # fmt: skip
        timings[f"evaluate images ({name})"] = time.perf_counter() - t
        scores[name] = json.loads((out / f"eval-images-{name}" / "metrics.json").read_text())
    return {
        "grid": gen / "compare.png",
        "style": style,
        "scores": scores,
        "prompts": prompts,
        "lora_layers": cfg.lora_layers,
    }


def t2i_sections(out: Path, t2i: dict[str, Any]) -> list[Any]:
    """The report's "Text -> image" sections: grid, metric table, style set thumbnails."""
    from PIL import Image

    from vlgen.metrics.image import LOWER_IS_BETTER
    from vlgen.report import html
    from vlgen.report.html import image_data_uri

    base, lora = t2i["scores"]["base"], t2i["scores"]["lora"]
    rows = []
    for k in IMAGE_METRICS:
        better = "lower" if k in LOWER_IS_BETTER else "higher"
        s = base["settings"].get(k, {})
        model = "VGG19, random init (seeded)" if k == "Gram" else f"{s.get('model')} (tiny random)"
        rows.append([k, html.fmt(base.get(k), 6), html.fmt(lora.get(k), 6), better, model])
    style = t2i["style"]
    thumbs = [
        html.img(image_data_uri(Image.open(p), fmt_="PNG", max_side=None), alt=p.name)
        for p in sorted(style.glob("*.png"))
    ]
    gram_b, gram_l = base.get("Gram"), lora.get("Gram")
    if gram_b is None or gram_l is None:
        verdict = "unavailable"
    else:
        change = (gram_l - gram_b) / gram_b if gram_b else 0.0
        closer = (
            "lower: the LoRA moved the generations towards the style set"
            if gram_l < gram_b
            else "higher: the LoRA did NOT move the generations towards the style set"
        )
        verdict = f"base {gram_b:.4g}, base + LoRA {gram_l:.4g} ({abs(change):.0%} {closer})"
    grid = Image.open(t2i["grid"])
    return [
        html.section(
            "Text → image: base vs base + style LoRA (same prompts, same seeds)",
            html.img(image_data_uri(grid, fmt_="PNG", max_side=None), alt="base vs LoRA", cls="figure"),
            html.table(["metric", "base", "base + LoRA", "better", "model"], rows, numeric=(1, 2)),
            note=f"Style metric: Gram distance to the style set (lower is closer in style): {verdict}. Gram uses "
            "a VGG19 with random (seeded) weights because ImageNet weights are not available offline: it still "
            "compares colour and texture statistics of feature maps, but is not the perceptual style distance of "
            "Gatys et al. CLIP-T, CLIP-I and DINO run on tiny random models: a pipeline check — not meaningful "
            "values. The base is `vlgen tiny sdxl --fit-vae` (VAE fitted on the captioning set's training images, "
            "UNet and text encoders random) with a shapes LoRA trained on the captioning set fused in "
            "(vlgen.t2i.fuse.fuse_lora_into_base); the style set was never used for the base (the VAE is fitted with "
            "colour augmentation, so it can reproduce colours outside the captioning set's palette). The UNet "
            f"itself stays random; both LoRAs adapt its attention projections and convolutions (--lora-layers "
            f"{t2i.get('lora_layers', '')}), so the generations are blurry shapes on a background rather than "
            "crisp icons: the Gram change reflects colour and texture statistics, not objects.",
        ),
        html.section(
            f"Style set ({len(thumbs)} images, autocaptioned with the trained CNN-LSTM)",
            html.Raw("".join(thumbs)),
            html.details("generation prompts", html.pre("\n".join(t2i["prompts"]))),
        ),
    ]
