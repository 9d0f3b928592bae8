"""Benchmark setting B2 of ../shared/bench/SPEC.md: one DreamBooth-LoRA step on reduced SDXL (CPU, fp32).

    .venv/bin/python benchmarks/bench_lora_b2.py [--configs ../shared/bench/reduced-sdxl] [--repeats 1]
        [--steps 30] [--variants all] [--threads N] [--diffusers-script PATH]
        [--out benchmarks/results/bench_lora_b2.json]

Model: the reduced-SDXL configs (UNet 35.1M parameters, 4-block VAE, two width-256 CLIP text encoders),
random weights seeded with 0, written once as a StableDiffusionXLPipeline directory. Data: 8 synthetic
256x256 icons; the instance prompt "a 3D icon in the style of TOK", or per-image captions. Training: batch
1, no accumulation, fp32, rank 4, lr 1e-4 constant, no warm-up, snr_gamma 5, seed 0, 30 steps; with and
without gradient checkpointing, with and without the latent/text caches.

Each run is its own process (so peak RSS is that run's), and runs of different variants alternate when
--repeats > 1. Both tools are timed the same way: a global torch optimizer-step hook (registered by this
file before the training code runs) stamps the end of every optimizer step; reported are the median
s/step over steps 6-30, the time from process start to the end of step 1 (imports included), and peak
RSS (ru_maxrss of the child from os.wait4). The JSON is rewritten after every run ("complete": false
until the last), so an interrupted run still leaves its numbers.

--diffusers-script PATH runs diffusers' examples/dreambooth/train_dreambooth_lora_sdxl.py (a copy outside
this repository, e.g. from `git show 58eb52c:examples/dreambooth/...`; never vendored here) unmodified at
the same settings as its own process, right after the vlgen run of the same variant; the ratios come
from that one run: of the medians, and per repeat (each vlgen run against the diffusers run after it,
the ratio least touched by the load of a shared machine). Without it the SPEC's figures for that script
(commit 58eb52c, same machine class) stand in. Instance variant: --instance_data_dir (a folder of the 8
PNGs only, as it opens every file there as an image); caption variant: --dataset_name on an imagefolder
(PNGs + metadata.jsonl) with --caption_column text, the only way that script takes per-image captions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
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
    """The 8 icons (vlgen reads the folder as it is), plus two views of them for diffusers' script:
    OUT-images (the PNGs only: it opens every file of --instance_data_dir as an image) and OUT-captions
    (PNGs + metadata.jsonl: an imagefolder for --dataset_name / --caption_column)."""
    if not (out / "metadata.jsonl").is_file():
        from vlgen.data.synth import synth_dataset

        synth_dataset(out, n=8, seed=0, style="glossy", image_size=256, progress=False)
    pngs = sorted(out.glob("*.png"))
    for view, extra in (("-images", []), ("-captions", [out / "metadata.jsonl"])):
        d = out.with_name(out.name + view)
        d.mkdir(exist_ok=True)
        for f in pngs + extra:
            if not (d / f.name).exists():
                (d / f.name).symlink_to(f)
    return out


def stamp_steps(path: str) -> None:
    """Record the end time of every optimizer step of this process into PATH (JSON, written at exit).

    On CUDA (benchmarks/gpu_check.py) the hook first waits for the step's kernels (`synchronize`), and the
    JSON also holds the process's peak `torch.cuda.max_memory_allocated` up to the last step (set-up included).
    """
    import atexit

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    stamps: list[float] = []
    peak: list[int] = []  # max_memory_allocated after the latest step (CUDA only)

    def hook(*_) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
            peak[:] = [torch.cuda.max_memory_allocated()]
        stamps.append(time.perf_counter())

    register_optimizer_step_post_hook(hook)
    atexit.register(lambda: Path(path).write_text(json.dumps({"t0": T0, "stamps": stamps, "peak_vram": peak[:1]})))


def run_diffusers(script: str, argv: list[str], stamps: str) -> None:
    """Run diffusers' script as __main__ in this process, its optimizer steps stamped."""
    import runpy

    stamp_steps(stamps)
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")


def diffusers_argv(spec: dict) -> list[str]:
    """train_dreambooth_lora_sdxl.py's arguments for B2 (the same settings as `child`)."""
    argv = [
        "--pretrained_model_name_or_path", spec["model"], "--output_dir", spec["out"],
        "--instance_prompt", TRIGGER, "--resolution", str(spec.get("resolution", 256)), "--train_batch_size", "1",
        "--gradient_accumulation_steps", "1", "--learning_rate", "1e-4", "--lr_scheduler", "constant",
        "--lr_warmup_steps", "0", "--snr_gamma", "5", "--rank", "4", "--seed", "0",
        "--mixed_precision", spec.get("mixed_precision", "no"),
        "--max_train_steps", str(spec["steps"]), "--checkpointing_steps", "500",
    ]  # fmt: skip
    if spec["prompts"] == "captions":  # per-image captions only through `datasets` (imagefolder + metadata)
        argv += ["--dataset_name", spec["data_captions"], "--caption_column", "text"]
    else:
        argv += ["--instance_data_dir", spec["data_images"]]
    if spec["gc"]:
        argv.append("--gradient_checkpointing")
    return argv


def child(spec: dict) -> None:
    """One training run; prints one JSON line."""
    stamp_steps(spec["stamps"])
    from vlgen.t2i.lora_config import LoraTrainConfig
    from vlgen.t2i.lora_trainer import LoraTrainer

    cfg = LoraTrainConfig(
        pretrained_model_name_or_path=spec["model"],
        pretrained_vae_model_name_or_path="none",
        instance_data_dir=spec["data"],
        output_dir=spec["out"],
        instance_prompt=TRIGGER,
        caption_column="text" if spec["prompts"] == "captions" else None,
        resolution=spec.get("resolution", 256),
        train_batch_size=1,
        gradient_accumulation_steps=1,
        gradient_checkpointing=spec["gc"],
        learning_rate=1e-4,
        lr_scheduler="constant",
        lr_warmup_steps=0,
        snr_gamma=5.0,
        rank=4,
        mixed_precision=spec.get("mixed_precision", "no"),
        seed=0,
        max_train_steps=spec["steps"],
        checkpointing_steps=500,
        num_validation_images=0,
        cache_latents=spec["caches"],
        cache_text_embeddings=spec["caches"],
    )
    trainer = LoraTrainer(cfg)
    summary = trainer.train()
    result = {
        "setup_to_loop_s": trainer.timings["loop_start"] - T0,
        "caches_s": trainer.timings["caches_s"],
        "final_loss": summary["final_train_loss"],
    }
    print(json.dumps(result), flush=True)


def run_one(tool: str, spec: dict, env: dict, script: str | None) -> dict:
    """One run as its own process; step times from its stamps file, peak RSS from os.wait4."""
    # beside the run's output folder, not in it: vlgen refuses an --output-dir that holds other files
    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)  # a run left by an earlier invocation (vlgen refuses to mix runs)
    stamps = out.with_name(f"{out.name}-stamps-{tool}.json")
    stamps.parent.mkdir(parents=True, exist_ok=True)
    stamps.unlink(missing_ok=True)
    spec = {**spec, "stamps": str(stamps)}
    if tool == "vlgen":
        cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    else:
        cmd = [sys.executable, __file__, "--run-diffusers", script, "--stamps", str(stamps), "--",
               *diffusers_argv(spec)]  # fmt: skip
    log = out.with_name(f"{out.name}-log-{tool}.txt")
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=f, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{tool} run failed ({shlex.join(cmd)[:300]}...):\n{log.read_text()[-3000:]}")
    data = json.loads(stamps.read_text())
    t0, st = data["t0"], data["stamps"]
    if len(st) != spec["steps"]:
        sys.exit(f"{tool}: {len(st)} optimizer steps stamped, expected {spec['steps']} (see {log})")
    dts = [b - a for a, b in zip(st, st[1:], strict=False)]  # dts[i-2]: step i (i >= 2)
    timed = dts[spec.get("first_timed_step", 6) - 2 :]  # steps 6..30 (SPEC B2)
    result = {
        "tool": tool,
        **{k: spec[k] for k in ("prompts", "gc", "caches")},
        "s_per_step": statistics.median(timed),
        "mean_s_per_step": statistics.fmean(timed),
        "first_step_end_s": st[0] - t0,  # process start (imports included) to the end of step 1
        "after_last_step_s": time.perf_counter() - t - (st[-1] - t0),
        "total_s": time.perf_counter() - t,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }
    if data.get("peak_vram"):
        result["peak_vram_mib"] = data["peak_vram"][0] / 2**20
    if tool == "vlgen":
        result.update(json.loads(out.strip().splitlines()[-1]))
    return result


def summarise(args, chosen: list, runs: list[dict], script: str | None, complete: bool, quiet: bool) -> None:
    """Rows (medians per variant, ratios) and the runs so far into args.out; the table on stdout unless quiet."""

    def med(tool: str, prompts: str, gc: bool, caches: bool | None, key: str) -> float | None:
        xs = [x[key] for x in runs if (x["tool"], x["prompts"], x["gc"]) == (tool, prompts, gc)
              and (caches is None or x["caches"] == caches)]  # fmt: skip
        return statistics.median(xs) if xs else None

    def say(line: str) -> None:
        if not quiet:
            print(line)

    rows = []
    source = "measured in this run" if script else "SPEC constants (commit 58eb52c)"
    say(f"\nB2 (reduced SDXL, 256 px, batch 1, fp32, rank 4, {args.steps} steps), medians of {args.repeats}; "
          f"diffusers: {source}")  # fmt: skip
    say(f"{'prompts':9s} {'grad ckpt':9s} {'caches':6s} {'s/step':>7s} {'diffusers':>9s} {'speed-up':>8s} "
          f"{'paired':>6s} {'step1 s':>7s} {'RSS MiB':>7s} {'diffusers':>9s} {'RSS ratio':>9s}")  # fmt: skip
    for prompts, gc, caches in chosen:
        s = med("vlgen", prompts, gc, caches, "s_per_step")
        if s is None:  # not run yet (partial results, written after every run)
            continue
        first = med("vlgen", prompts, gc, caches, "first_step_end_s")
        rss = med("vlgen", prompts, gc, caches, "peak_rss_mib")
        if script:
            ref = (
                med("diffusers", prompts, gc, None, "s_per_step"),
                med("diffusers", prompts, gc, None, "peak_rss_mib"),
            )
            ref_first = med("diffusers", prompts, gc, None, "first_step_end_s")
        else:
            ref, ref_first = DIFFUSERS.get((prompts, gc), (None, None)), None
        speedup = ref[0] / s if ref[0] else None  # ratio of the medians
        rss_ratio = rss / ref[1] if ref[1] else None
        # Each repeat's vlgen run and the diffusers run right after it: the ratio least touched by drift.
        paired = [d["s_per_step"] / v["s_per_step"] for v in runs for d in runs
                  if v["tool"] == "vlgen" and d["tool"] == "diffusers" and v["repeat"] == d["repeat"]
                  and (v["prompts"], v["gc"], v["caches"]) == (prompts, gc, caches)
                  and (d["prompts"], d["gc"]) == (prompts, gc)]  # fmt: skip
        rows.append({"prompts": prompts, "gradient_checkpointing": gc, "caches": caches, "s_per_step": s,
                     "first_step_end_s": first, "peak_rss_mib": rss, "diffusers_s_per_step": ref[0],
                     "diffusers_first_step_end_s": ref_first, "diffusers_peak_rss_mib": ref[1],
                     "speedup_vs_diffusers": speedup, "rss_vs_diffusers": rss_ratio,
                     "speedup_paired_per_repeat": paired,
                     "speedup_paired_median": statistics.median(paired) if paired else None})  # fmt: skip
        ref_s = f"{ref[0]:.3f}" if ref[0] else "-"
        ref_m = f"{ref[1]:.0f}" if ref[1] else "-"
        sp = f"{speedup:.2f}x" if speedup else "-"
        rr = f"{rss_ratio:.2f}" if rss_ratio else "-"
        pr = f"{statistics.median(paired):.2f}x" if paired else "-"
        say(f"{prompts:9s} {gc!s:9s} {caches!s:6s} {s:7.3f} {ref_s:>9s} {sp:>8s} {pr:>6s} {first:7.1f} {rss:7.0f} "
              f"{ref_m:>9s} {rr:>9s}")  # fmt: skip
    import torch

    result = {
        "benchmark": "B2 DreamBooth-LoRA step, reduced SDXL",
        "settings": {
            "steps": args.steps,
            "repeats": args.repeats,
            "complete": complete,  # False: interrupted, rows from the runs so far
            "resolution": 256,
            "batch": 1,
            "rank": 4,
            "lr": 1e-4,
            "snr_gamma": 5.0,
            "dtype": "fp32",
            "configs": str(args.configs),
            "diffusers": source,
            "diffusers_script": script,
        },  # fmt: skip
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads or torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },  # fmt: skip
        "rows": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"\nwrote {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=Path, default=ROOT.parent / "shared" / "bench" / "reduced-sdxl")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vlgen-bench-b2")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--variants", default="all", help="'all' or comma-separated indices into VARIANTS")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_lora_b2.json")
    ap.add_argument(
        "--diffusers-script",
        help="path to diffusers' examples/dreambooth/train_dreambooth_lora_sdxl.py (outside this repo): run it "
        "at the same settings, alternating with vlgen; without it the SPEC's figures are the reference",
    )
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every run (default: torch's default)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--run-diffusers", help=argparse.SUPPRESS)
    ap.add_argument("--stamps", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.run_diffusers:
        return run_diffusers(args.run_diffusers, args.rest, args.stamps)
    if not (args.configs / "unet" / "config.json").is_file():
        sys.exit(f"--configs {args.configs}: no reduced-SDXL configs there (see ../shared/bench/SPEC.md, B2)")
    model = build_model(args.configs, args.work / "reduced-sdxl-seed0")
    data = build_data(args.work / "icons-256")
    chosen = VARIANTS if args.variants == "all" else [VARIANTS[int(i)] for i in args.variants.split(",")]
    env = {**os.environ, "VLGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.threads:  # both tools alike; default: torch's own choice (the number of cores)
        env["OMP_NUM_THREADS"] = str(args.threads)
    script = str(Path(args.diffusers_script).resolve()) if args.diffusers_script else None
    if script and not Path(script).is_file():
        sys.exit(f"--diffusers-script {script}: no such file")
    plan: list[tuple[str, str, bool, bool]] = []  # (tool, prompts, gc, caches)
    for prompts, gc, caches in chosen:
        plan.append(("vlgen", prompts, gc, caches))
        if script and ("diffusers", prompts, gc, False) not in plan:  # its script has no caches
            plan.append(("diffusers", prompts, gc, False))
    runs: list[dict] = []
    for r in range(args.repeats):
        for tool, prompts, gc, caches in plan:  # alternate tools and variants (SPEC: drift is +-15-30%)
            spec = {"model": str(model), "data": str(data), "out": str(args.work / f"run-{r}-{tool}"),
                    "steps": args.steps, "prompts": prompts, "gc": gc, "caches": caches,
                    "data_images": str(data.with_name(data.name + "-images")),
                    "data_captions": str(data.with_name(data.name + "-captions"))}  # fmt: skip
            load = os.getloadavg()[0]
            runs.append({"repeat": r, "load_avg_1min_before": load, **run_one(tool, spec, env, script)})
            x = runs[-1]
            print(f"  [{r}] {tool:9s} {prompts:8s} gc={gc!s:5s} caches={caches!s:5s} {x['s_per_step']:.3f} s/step "
                  f"{x['peak_rss_mib']:.0f} MiB", file=sys.stderr)  # fmt: skip
            last = r == args.repeats - 1 and (tool, prompts, gc, caches) == plan[-1]
            summarise(args, chosen, runs, script, complete=last, quiet=not last)  # JSON after every run


if __name__ == "__main__":
    main()
