"""Benchmark setting B2 of ../shared/bench/SPEC.md: one DreamBooth-LoRA step on reduced SDXL (CPU, fp32).

    .venv/bin/python benchmarks/bench_lora_b2.py [--configs ../shared/bench/reduced-sdxl] [--repeats 1]
        [--steps 30] [--variants all] [--out benchmarks/results/bench_lora_b2.json]

Model: the reduced-SDXL configs (UNet 35.1M parameters, 4-block VAE, two width-256 CLIP text encoders),
random weights seeded with 0, written once as a StableDiffusionXLPipeline directory. Data: 8 synthetic
256x256 icons; the instance prompt "a 3D icon in the style of TOK", or per-image captions. Training: batch
1, no accumulation, fp32, rank 4, lr 1e-4 constant, no warm-up, snr_gamma 5, seed 0, 30 steps; with and
without gradient checkpointing, with and without the latent/text caches.

Each run is its own process (so peak RSS is that run's), and runs of different variants alternate when
--repeats > 1. Reported: median s/step over steps 6-30, set-up time from process start to the first step
(imports included, as the SPEC figure), and peak RSS (ru_maxrss). Diffusers' script figures are the
SPEC's (commit 58eb52c, same machine class); the script itself is not run here (no network).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

T0 = time.perf_counter()  # before any heavy import: set-up time counts from here
ROOT = Path(__file__).resolve().parents[1]
TRIGGER = "a 3D icon in the style of TOK"
# SPEC B2, diffusers' train_dreambooth_lora_sdxl.py: (s/step, peak RSS MiB)
DIFFUSERS = {
    ("instance", False): (0.70, 804),
    ("instance", True): (0.93, 750),
    ("captions", False): (0.75, 894),
}
VARIANTS = [  # (prompts, gradient_checkpointing, caches)
    ("instance", False, True),
    ("instance", True, True),
    ("captions", False, True),
    ("captions", True, True),
    ("instance", False, False),
    ("instance", True, False),
    ("captions", False, False),
]


def build_model(configs: Path, out: Path) -> Path:
    """A StableDiffusionXLPipeline directory with random weights (seed 0) from the reduced-SDXL configs."""
    if (out / "model_index.json").is_file():
        return out
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
    te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder"))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(configs / "text_encoder_2"))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=CLIPTokenizer.from_pretrained(configs / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(configs / "tokenizer_2"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(configs / "scheduler")),
        add_watermarker=False,
    )
    n = sum(p.numel() for p in unet.parameters())
    print(f"reduced SDXL: UNet {n / 1e6:.1f}M parameters -> {out}", file=sys.stderr)
    tmp = out.with_name(out.name + ".tmp")
    pipe.save_pretrained(tmp)
    tmp.rename(out)
    return out


def build_data(out: Path) -> Path:
    if (out / "metadata.jsonl").is_file():
        return out
    from vlgen.data.synth import synth_dataset

    synth_dataset(out, n=8, seed=0, style="glossy", image_size=256, progress=False)
    return out


def child(spec: dict) -> None:
    """One training run; prints one JSON line."""
    import resource

    from vlgen.t2i.lora_config import LoraTrainConfig
    from vlgen.t2i.lora_trainer import LoraTrainer

    cfg = LoraTrainConfig(
        pretrained_model_name_or_path=spec["model"],
        pretrained_vae_model_name_or_path="none",
        instance_data_dir=spec["data"],
        output_dir=spec["out"],
        instance_prompt=TRIGGER,
        caption_column="text" if spec["prompts"] == "captions" else None,
        resolution=256,
        train_batch_size=1,
        gradient_accumulation_steps=1,
        gradient_checkpointing=spec["gc"],
        learning_rate=1e-4,
        lr_scheduler="constant",
        lr_warmup_steps=0,
        snr_gamma=5.0,
        rank=4,
        mixed_precision="no",
        seed=0,
        max_train_steps=spec["steps"],
        checkpointing_steps=500,
        num_validation_images=0,
        cache_latents=spec["caches"],
        cache_text_embeddings=spec["caches"],
    )
    trainer = LoraTrainer(cfg)
    summary = trainer.train()
    times = trainer.step_times
    result = {
        **{k: spec[k] for k in ("prompts", "gc", "caches")},
        "s_per_step": statistics.median(times[5:]),  # steps 6..30
        "mean_s_per_step": statistics.fmean(times[5:]),
        "setup_to_first_step_s": trainer.timings["loop_start"] - T0,
        "caches_s": trainer.timings["caches_s"],
        "total_s": time.perf_counter() - T0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final_loss": summary["final_train_loss"],
    }
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=Path, default=ROOT.parent / "shared" / "bench" / "reduced-sdxl")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vlgen-bench-b2")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--variants", default="all", help="'all' or comma-separated indices into VARIANTS")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_lora_b2.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if not (args.configs / "unet" / "config.json").is_file():
        sys.exit(f"--configs {args.configs}: no reduced-SDXL configs there (see ../shared/bench/SPEC.md, B2)")
    model = build_model(args.configs, args.work / "reduced-sdxl-seed0")
    data = build_data(args.work / "icons-256")
    chosen = VARIANTS if args.variants == "all" else [VARIANTS[int(i)] for i in args.variants.split(",")]
    env = {**os.environ, "VLGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    runs: list[dict] = []
    for r in range(args.repeats):
        for prompts, gc, caches in chosen:  # alternate variants within each repeat (SPEC: drift is ±30%)
            spec = {"model": str(model), "data": str(data), "out": str(args.work / f"run-{r}"), "steps": args.steps}
            spec.update(prompts=prompts, gc=gc, caches=caches)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                sys.exit(f"run {spec} failed:\n{proc.stderr[-3000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(
                f"  {prompts:8s} gc={gc!s:5s} caches={caches!s:5s} {runs[-1]['s_per_step']:.3f} s/step", file=sys.stderr
            )

    rows = []
    print(f"\nB2 (reduced SDXL, 256 px, batch 1, fp32, rank 4, {args.steps} steps), medians of {args.repeats}:")
    print(f"{'prompts':9s} {'grad ckpt':9s} {'caches':6s} {'s/step':>7s} {'diffusers':>9s} {'speed-up':>8s} "
          f"{'setup s':>7s} {'RSS MiB':>7s} {'diffusers':>9s}")  # fmt: skip
    for prompts, gc, caches in chosen:
        mine = [x for x in runs if (x["prompts"], x["gc"], x["caches"]) == (prompts, gc, caches)]
        s = statistics.median(x["s_per_step"] for x in mine)
        setup = statistics.median(x["setup_to_first_step_s"] for x in mine)
        rss = statistics.median(x["peak_rss_mib"] for x in mine)
        ref = DIFFUSERS.get((prompts, gc))
        speedup = ref[0] / s if ref else None
        rows.append({"prompts": prompts, "gradient_checkpointing": gc, "caches": caches, "s_per_step": s,
                     "setup_to_first_step_s": setup, "peak_rss_mib": rss, "diffusers_s_per_step": ref and ref[0],
                     "diffusers_peak_rss_mib": ref and ref[1], "speedup_vs_diffusers": speedup})  # fmt: skip
        ref_s = f"{ref[0]:.2f}" if ref else "-"
        ref_m = f"{ref[1]}" if ref else "-"
        sp = f"{speedup:.2f}x" if speedup else "-"
        print(f"{prompts:9s} {gc!s:9s} {caches!s:6s} {s:7.3f} {ref_s:>9s} {sp:>8s} {setup:7.1f} {rss:7.0f} {ref_m:>9s}")
    import torch

    result = {
        "benchmark": "B2 DreamBooth-LoRA step, reduced SDXL",
        "settings": {
            "steps": args.steps,
            "repeats": args.repeats,
            "resolution": 256,
            "batch": 1,
            "rank": 4,
            "lr": 1e-4,
            "snr_gamma": 5.0,
            "dtype": "fp32",
            "configs": str(args.configs),
        },  # fmt: skip
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },  # fmt: skip
        "rows": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
