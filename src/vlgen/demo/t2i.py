"""The demo's text -> image half (issues 7, 15): style set -> autocaption -> style LoRA on the demo's base ->
round trip (`vlgen roundtrip prompts`: generate test-split prompts with the untrained base, the base and base +
LoRA, same seeds, and caption each image with the demo's own captioner) -> image metrics against the style set.

Offline there are no pretrained weights, so:
- the base is the committed `vlgen/demo/base` (vlgen.demo.base_model; `vlgen demo --train-base OUT` retrains it):
  a StableDiffusionXLPipeline of the real classes at toy size (16x16 latents at 64 px) whose VAE and UNet were
  trained beforehand on this demo's captioning set (seed 0, train split; never the style set or the test split);
- the floor is the same base with its UNet re-initialised, the ceiling the captioner on the real test images;
  the round-trip score is the share of a prompt's colour and shape words its recovered caption names
  (vlgen.demo.scoring);
- the style LoRA adapts the attention projections *and* the convolutions (`--lora-layers`): the base's 16x16
  level has no attention;
- Gram uses a VGG19 with seeded random init (`vlgen tiny vgg19`; no ImageNet weights offline): it still compares
  the colour/texture statistics of the feature maps, but it is not the perceptual style metric of Gatys et al.;
- CLIP-T/CLIP-I/DINO run on `vlgen tiny clip`/`vlgen tiny dino`: a pipeline check, not meaningful values.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The style phrase goes after the caption: the base's text encoders are causal, so a caption reads the same
# with or without it (vlgen.demo.base_model, DemoBaseConfig.affix), and what the LoRA changes is the style.
STYLE_SUFFIX = ", a 3D icon in the style of TOK"
STYLE_TEMPLATE = "{caption}" + STYLE_SUFFIX


def without_style(prompt: str) -> str:
    """The caption a style prompt was made from (for labels)."""
    return prompt[: -len(STYLE_SUFFIX)] if prompt.endswith(STYLE_SUFFIX) else prompt


IMAGE_METRICS = ("Gram", "CLIP-T", "CLIP-I", "DINO")


def style_prompts(data: Path, n: int) -> list[str]:
    """The first `n` test-split captions of the captioning set, in the style-prompt template."""
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines() if line.strip()]
    return [STYLE_TEMPLATE.format(caption=r["text"]) for r in rows if r.get("split") == "test"][:n]


def read_captions(path: Path) -> dict[str, str]:
    """{file_name: caption} of a `vlgen caption` output file."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["file_name"]: r["caption"] for r in rows}


def ceiling_score(data: Path, captions_file: Path) -> dict[str, Any]:
    """The captioner on the real test images: each image's reference caption plays the prompt."""
    from vlgen.data import load_records
    from vlgen.demo.scoring import shape_colour_accuracy

    caps = read_captions(captions_file)
    refs = {r.file_name: r.captions[0] for r in load_records(data, split="test")}
    names = [n for n in refs if n in caps]
    return shape_colour_accuracy([refs[n] for n in names], [caps[n] for n in names])


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
    from vlgen.demo.base_model import DEMO_BASE, build_untrained_base
    from vlgen.demo.scoring import shape_colour_accuracy
    from vlgen.errors import VlgenError

    style, models = out / "data" / "style", out / "models"
    s = str(cfg.seed)
    base = Path(cfg.base) if getattr(cfg, "base", None) else DEMO_BASE
    if not (base / "model_index.json").is_file():
        raise VlgenError(f"demo base {base}: no model_index.json (train one with `vlgen demo --train-base {base}`)")
    t = time.perf_counter()
    if not (style / "metadata.jsonl").is_file():
        run(["data", "synth", str(style), "--n", str(cfg.n_style), "--style", "--seed", s], commands)
    run(["autocaption", str(style), "--model", str(captioner), "--template", STYLE_TEMPLATE]
        + ["--caption-column", "prompt", "--overwrite", "--device", "cpu"], commands)  # fmt: skip
    timings["style set + autocaption"] = time.perf_counter() - t

    t = time.perf_counter()
    for name in ("clip", "dino"):
        run(["tiny", name, str(models / f"tiny-{name}"), "--seed", s], commands)
    vgg = models / "vgg19-random-init"
    run(["tiny", "vgg19", str(vgg), "--seed", s], commands)
    # The floor: the same base with its UNet re-initialised (what the captioner makes of an untrained UNet).
    floor = build_untrained_base(base, models / "untrained-base", cfg.seed)
    commands.append(f"# python: vlgen.demo.base_model.build_untrained_base({base}, {floor}, seed={cfg.seed})")
    timings["tiny models + untrained base"] = time.perf_counter() - t

    # --lora-layers: the attention projections and the ResNet/IO convolutions (LoCon): the base's 16x16 level
    # has no attention, so an attention-only LoRA could not change the full-resolution path.
    lora_common = ["--vae", "none", "--resolution", "64", "--seed", s, "--cpu", "--lora-layers", cfg.lora_layers]
    lora_common += ["--overwrite-output-dir"]  # a rerun of the demo retrains its LoRA from scratch
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
    # Round trip (`vlgen roundtrip prompts`): generate every prompt with the untrained base (floor), the base and
    # base + LoRA (same seeds), caption each image with the demo's own captioner, and score how many of the
    # prompt's colours and shapes come back (vlgen.demo.scoring) beside the caption metric set.
    sampling = ["--num-inference-steps", str(cfg.num_inference_steps), "--seed", s]
    sampling += ["--guidance-scale", str(cfg.guidance_scale), "--num-beams", str(cfg.num_beams), "--device", "cpu"]
    sampling += ["--clip-model", str(models / "tiny-clip")]
    gen = out / "roundtrip"
    roundtrip: dict[str, dict] = {}
    rows: dict[str, list[dict]] = {}
    for name, model in (("floor", ["--base", str(floor)]), ("base", ["--base", str(base)]),
                        ("lora", ["--base", str(base), "--lora", str(lora)])):  # fmt: skip
        t = time.perf_counter()
        shutil.rmtree(gen / name, ignore_errors=True)  # a rerun of the demo regenerates (the LoRA is retrained)
        run(["roundtrip", "prompts", str(prompts_file), *model, "--captioner", str(captioner)]
            + ["--out", str(gen / name)] + sampling, commands)  # fmt: skip
        timings[f"round trip ({name})"] = time.perf_counter() - t
        rows[name] = [json.loads(line) for line in (gen / name / "metadata.jsonl").read_text().splitlines() if line]
        caps = [r["captions"][str(captioner)] for r in rows[name]]
        metrics = json.loads((gen / name / "metrics.json").read_text())["captioners"][str(captioner)]
        roundtrip[name] = {**shape_colour_accuracy([r["prompt"] for r in rows[name]], caps), **metrics}
        examples = zip(rows[name][:8], caps[:8], strict=True)
        roundtrip[name]["examples"] = [{"prompt": r["prompt"], "caption": c} for r, c in examples]
    roundtrip["ceiling"] = ceiling_score(data, out / "captions-trained.jsonl")

    from PIL import Image

    from vlgen.t2i.grid import image_grid

    grid_rows = [[Image.open(gen / n / r["file_name"]) for n in ("floor", "base", "lora")]
                 for r in rows["base"][: cfg.n_grid]]  # fmt: skip
    labels = [f"seed {r['seed']}: {without_style(r['prompt'])}" for r in rows["base"][: cfg.n_grid]]
    grid = out / "compare.png"
    image_grid(grid_rows, row_labels=labels, col_labels=["untrained", "base", "base + LoRA"]).save(grid)

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
        "grid": grid,
        "style": style,
        "scores": scores,
        "roundtrip": roundtrip,
        "base": str(base),
        "prompts": prompts,
        "lora_layers": cfg.lora_layers,
    }


def _base_info(base: Path) -> str:
    """The base's provenance (its train_base.json when it has one) as HTML."""
    from html import escape

    from vlgen.demo.base_model import DEMO_BASE, TRAIN_INFO

    f = base / TRAIN_INFO
    if not f.is_file():
        return f"<p>Base: <code>{escape(str(base))}</code> (no {TRAIN_INFO}: trained elsewhere).</p>"
    info = json.loads(f.read_text())
    c, secs, fit = info.get("config", {}), info.get("seconds", {}), info.get("vae_fit", {})
    committed = base.resolve() == DEMO_BASE.resolve()
    loss = (
        "the v-prediction loss on a zero-terminal-SNR schedule (Lin et al. 2023: the last step is pure noise, so "
        "colours and layout must come from the prompt)"
        if c.get("zero_terminal_snr")
        else "the DDPM epsilon loss"
    )
    if c.get("affix") == "suffix":
        loss += ", captions also followed by a generic style phrase with random style words (so that "
        loss += "\u201c..., in the style of TOK\u201d leaves the caption readable)"
    where = "the committed <code>vlgen/demo/base</code>" if committed else f"<code>{escape(str(base))}</code>"
    return (
        f"<p>Base: {where}, a StableDiffusionXLPipeline (the real classes at toy size: 64 px images, 16x16x4 "
        f"latents, a {info.get('unet_parameters', 0) / 1e6:.1f} M-parameter UNet, random frozen tiny CLIP text "
        f"encoders), trained beforehand by <code>vlgen demo --train-base OUT --seed {c.get('seed', 0)}</code> "
        f"(vlgen.demo.base_model) on the {info.get('train_images')} training images of this demo's captioning "
        f"set — never on its test split or the style set: the VAE fitted as an autoencoder for "
        f"{c.get('vae_steps')} steps (reconstruction MSE {fit.get('reconstruction_mse_after', 0):.4f}), then the "
        f"whole UNet for {c.get('steps')} steps of batch {c.get('batch_size')} with {loss} "
        f"(Min-SNR-{c.get('snr_gamma')}, {c.get('caption_dropout', 0):.0%} of the captions dropped for "
        f"classifier-free guidance, EMA {c.get('ema_decay')}), final loss {info.get('final_loss', 0):.4f}; "
        f"{secs.get('total', 0) / 60:.0f} min on {c.get('threads')} CPU threads. Retrain it with the same command "
        "(seeded: the same machine writes the same weights).</p>"
    )


def _roundtrip_verdict(rt: dict[str, Any]) -> str:
    """One measured sentence: where the base stands between floor and ceiling, and what the LoRA costs."""
    acc = {k: rt.get(k, {}).get("shape_colour_accuracy") for k in ("floor", "base", "lora", "ceiling")}
    if any(v is None for v in acc.values()):
        return ""
    span = acc["ceiling"] - acc["floor"]
    share = (acc["base"] - acc["floor"]) / span if span > 0 else 0.0
    return (
        f"Measured here: the base recovers {acc['base']:.3f} against a floor of {acc['floor']:.3f} and a ceiling "
        f"of {acc['ceiling']:.3f} ({share:.0%} of the way from floor to ceiling"
        + ("; no better than chance: the base does not yet draw what it is asked" if share <= 0.1 else "")
        + f"); the LoRA changes it by {acc['lora'] - acc['base']:+.3f}."
    )


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
    rt = t2i.get("roundtrip", {})
    what = {
        "floor": "untrained base (UNet re-initialised) on the same prompts",
        "base": "the base on the test-split prompts",
        "lora": "base + style LoRA on the same prompts and seeds",
        "ceiling": "the captioner on the real test images (their captions as prompts)",
    }
    rt_rows = [[k, html.fmt(rt[k].get("shape_colour_accuracy"), 3), rt[k].get("n"), what[k]] for k in what if k in rt]
    examples = [
        [without_style(e["prompt"]), e["caption"], lc["caption"]]
        for e, lc in zip(rt.get("base", {}).get("examples", []), rt.get("lora", {}).get("examples", []), strict=False)
    ]
    info = _base_info(Path(t2i.get("base", "")))
    return [
        html.section(
            "Text → image: base vs base + style LoRA (same prompts, same seeds)",
            html.img(image_data_uri(grid, fmt_="PNG", max_side=None), alt="base vs LoRA", cls="figure"),
            html.table(["metric", "base", "base + LoRA", "better", "model"], rows, numeric=(1, 2)),
            note=f"Style metric: Gram distance to the style set (lower is closer in style): {verdict}. Gram uses "
            "a VGG19 with random (seeded) weights because ImageNet weights are not available offline: it still "
            "compares colour and texture statistics of feature maps, but is not the perceptual style distance of "
            "Gatys et al. CLIP-T, CLIP-I and DINO run on tiny random models: a pipeline check — not meaningful "
            f"values. The style LoRA adapts the base's attention projections and convolutions (--lora-layers "
            f"{t2i.get('lora_layers', '')}).",
        ),
        html.section(
            "Round trip: does the picture show what the prompt asked for?",
            html.table(["generations", "shape/colour accuracy", "n", "what"], rt_rows, numeric=(1, 2)),
            html.details(
                "prompts and recovered captions (first 8)",
                html.table(["prompt", "caption of the base's image", "caption of the LoRA's image"], examples),
            ),
            note="Each generated image is captioned by the demo's own trained CNN-LSTM; the score is the share of "
            "the prompt's colour and shape words that its caption names, averaged over the generations "
            "(vlgen.demo.scoring: which colour goes with which shape is not scored; plurals count as singular). "
            "The floor is what the captioner reads into an untrained UNet's pictures, the ceiling what it "
            f"recovers from the real test images. {_roundtrip_verdict(rt)}",
        ),
        html.section("Where the base comes from", html.Raw(info)),
        html.section(
            f"Style set ({len(thumbs)} images, autocaptioned with the trained CNN-LSTM)",
            html.Raw("".join(thumbs)),
            html.details("generation prompts", html.pre("\n".join(t2i["prompts"]))),
        ),
    ]
