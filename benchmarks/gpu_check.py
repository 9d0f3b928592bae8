"""GPU check kit (issue 19 item 6): SPEC B1 and B2 at published size on one CUDA GPU, one table + JSON.

    bash benchmarks/gpu_check.sh [--out PATH] [--skip b1|b2] ...    # on the GPU machine (see README.md)
    bash benchmarks/gpu_check.sh --dry-run [--out PATH]              # CPU, tiny models, seconds

- B1 (captioning, fp16): `BlipForConditionalGeneration(BlipConfig())` at 384 px (blip-base, 224M parameters,
  random weights, `bench_caption_b1.build_b1`), 32 random 640x480 PNGs, greedy, exactly 20 new tokens.
  s/image of `vlgen caption`'s path (`caption_images` + `BlipCaptioner`, its default batch) vs transformers'
  `pipeline("image-text-to-text")` one image per call vs plain `model.generate` in batches of 8; methods
  alternate within a repeat, medians of 3. Goal: vlgen >= 3x the pipeline's images/s.
- B2 (DreamBooth-LoRA step, bf16): SDXL base at its published size (`vlgen.testing.published`: UNet 2.6B,
  VAE, both CLIP text encoders from the stored configs, random weights with seed 0, tokenizers from the
  shipped CLIP vocab), written once in bf16 (VAE fp32); 8 synthetic icons, instance prompt, 1024 px, batch 1,
  rank 4, lr 1e-4 constant, snr_gamma 5, 30 steps, `--mixed_precision bf16`. `vlgen train lora` (its
  defaults: caches on) vs diffusers' `train_dreambooth_lora_sdxl.py` at commit 58eb52c, unmodified, each its
  own process through `bench_lora_b2.run_one`: s/step = median over steps 6-30 (a global optimizer-step hook
  that synchronises CUDA), peak VRAM = `torch.cuda.max_memory_allocated` of the process up to its last step.
  Goal: vlgen's step >= 1.3x as fast as diffusers' at <= 0.8x its peak VRAM.

--dry-run runs the same code on CPU at tiny sizes (tiny BLIP, tiny SDXL at 64 px, 8 images, 1 repeat, 3
steps timed from step 2, the same dtypes): what the test suite runs. Diffusers' script is looked for in
benchmarks/gpu_wheels/ (where gpu_check_prepare.sh puts it); a dry run without it leaves its rows empty, a GPU
run refuses to start. The JSON is rewritten after every phase, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

T0 = time.perf_counter()
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmarks, when imported as a module (tests)

import bench_caption_b1 as b1  # noqa: E402
import bench_lora_b2 as b2  # noqa: E402

WHEELS = HERE / "gpu_wheels"
DIFFUSERS_SCRIPT = WHEELS / "train_dreambooth_lora_sdxl.py"
GOALS = {  # issue 19 item 6
    "b1_speedup_vs_pipeline": 3.0,  # at least
    "b2_speedup_vs_diffusers": 1.3,  # at least
    "b2_vram_vs_diffusers": 0.8,  # at most
}
# Modules the run needs; the GPU machine's image has torch and transformers, the rest travels as wheels.
NEEDED = ["torch", "transformers", "diffusers", "peft", "accelerate", "safetensors", "PIL", "torchvision", "vlgen"]


def preflight(args) -> None:
    """Fail in one line, before any model is built, when something the run needs is not there."""
    missing = []
    for name in NEEDED:
        try:
            importlib.import_module(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    if missing:
        sys.exit(
            f"gpu_check: cannot import {', '.join(missing)}; on a machine without them run "
            "benchmarks/gpu_check_prepare.sh first and carry benchmarks/gpu_wheels (see benchmarks/README.md)"
        )
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); use --dry-run on CPU")
    if "b2" not in args.skip and not args.dry_run and not Path(args.diffusers_script).is_file():
        sys.exit(
            f"gpu_check: --diffusers-script {args.diffusers_script}: no such file (benchmarks/gpu_check_prepare.sh "
            "--diffusers-clone DIR puts diffusers' train_dreambooth_lora_sdxl.py at commit 58eb52c there)"
        )


def environment(device: str) -> dict:
    import torch

    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "diffusers", "peft", "accelerate", "safetensors", "tokenizers"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {"device": device, "gpu": gpu, "cuda": torch.version.cuda, "versions": versions,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}  # fmt: skip


def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------- B1
def run_b1(args, device: str) -> dict:
    import torch
    from PIL import Image
    from transformers import pipeline

    dtype = torch.float16 if args.half else torch.float32
    if args.dry_run:
        from vlgen.testing.blip import tiny_blip

        model, processor = tiny_blip(0)
    else:
        model, processor = b1.build_b1(0)
    model = model.to(device, dtype).eval()
    n_tokens = args.max_new_tokens
    fixed = {"max_new_tokens": n_tokens, "min_new_tokens": n_tokens, "do_sample": False, "num_beams": 1}
    batch_size = b1._default_batch_size()

    captioner = b1.fixed_length_captioner(model, processor, n_tokens)
    pipe = pipeline("image-text-to-text", model=model, processor=processor, device=device)

    with tempfile.TemporaryDirectory() as tmp:
        paths = b1.write_images(Path(tmp), args.images, 0)
        methods = b1.caption_methods(captioner, pipe, paths, fixed, batch_size, device=device, dtype=dtype)
        # warm-up of every path on 2 images (CUDA context, cuBLAS handles, kernel selection, lazy imports)
        warm = [Image.open(p).convert("RGB") for p in paths[:2]]
        captioner.generate(warm, max_new_tokens=n_tokens)
        pipe(str(paths[0]), text="", generate_kwargs=fixed)
        with torch.inference_mode():
            model.generate(pixel_values=processor(images=warm, return_tensors="pt").pixel_values.to(device, dtype),
                           **fixed)  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in methods}
        captions: dict[str, list[str]] = {}
        names = list(methods)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # the order rotates per repeat
                _sync()
                t = time.perf_counter()
                got = methods[name]()
                _sync()
                times[name].append((time.perf_counter() - t) / args.images)
                captions.setdefault(name, got)
            print(f"  B1 repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in times.items()) + " s/image",
                  file=sys.stderr, flush=True)  # fmt: skip
    methods = pipe = captioner = model = None  # freed before B2 (the closures held them too)
    if device == "cuda":
        torch.cuda.empty_cache()
    med = {k: statistics.median(v) for k, v in times.items()}
    speedup = med["pipeline"] / med["vlgen_caption"]
    ref = captions["generate_batch8"]
    return {
        "setting": "B1",
        "model": "tiny BLIP (vlgen.testing.blip)"
        if args.dry_run
        else "BlipForConditionalGeneration(BlipConfig()), 384 px",
        "dtype": "fp16" if args.half else "fp32",
        "images": args.images,
        "repeats": args.repeats,
        "max_new_tokens": n_tokens,
        "vlgen_batch_size": batch_size,
        "s_per_image": med,
        "s_per_image_all": times,
        "vlgen_speedup_vs_pipeline": speedup,
        "vlgen_speedup_vs_pipeline_per_repeat": [
            p / v for p, v in zip(times["pipeline"], times["vlgen_caption"], strict=True)
        ],
        "vlgen_speedup_vs_generate_batch8": med["generate_batch8"] / med["vlgen_caption"],
        # fp16 rounds differently on vlgen's fast path (cross-attention reassociated): near-ties of random
        # weights may flip a token, so the share of identical captions is reported, not asserted
        "captions_identical": {k: captions[k] == ref for k in ("vlgen_caption", "pipeline")},
        "captions_identical_share": {
            k: sum(a == b for a, b in zip(captions[k], ref, strict=True)) / len(ref)
            for k in ("vlgen_caption", "pipeline")
        },
        "goal_speedup_vs_pipeline": GOALS["b1_speedup_vs_pipeline"],
        "goal_met": speedup >= GOALS["b1_speedup_vs_pipeline"],
    }


# ------------------------------------------------------------------------------------------------- B2
def build_sdxl(out: Path, dry_run: bool) -> dict:
    """The SDXL directory both tools train from: tiny (dry run) or SDXL base's published sizes on the GPU."""
    info = {"path": str(out), "model": "tiny SDXL (vlgen.testing.sdxl)" if dry_run else "SDXL base, published sizes"}
    if (out / "model_index.json").is_file():
        return info
    if dry_run:
        from vlgen.testing.sdxl import build_tiny_sdxl

        build_tiny_sdxl(out, seed=0)
        return info
    import torch

    from vlgen.testing.published import published_sdxl_pipeline

    t = time.perf_counter()
    torch.manual_seed(0)
    pipe = published_sdxl_pipeline(device="cuda")  # random weights initialised on the GPU (seconds, not minutes)
    info["unet_parameters"] = sum(p.numel() for p in pipe.unet.parameters())
    # bf16 on disk halves the write and the reads; both tools cast to bf16 themselves. The VAE stays fp32
    # (SDXL base's force_upcast: both tools run it in fp32).
    for m in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
        m.to(torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    tmp.rename(out)
    del pipe
    torch.cuda.empty_cache()
    info["build_s"] = time.perf_counter() - t
    return info


def run_b2(args, result: dict, save) -> dict:
    work = Path(args.work)
    t = time.perf_counter()
    model = build_sdxl(work / ("tiny-sdxl" if args.dry_run else "sdxl-base-random-bf16"), args.dry_run)
    data = b2.build_data(work / "icons-256")
    script = str(Path(args.diffusers_script).resolve()) if Path(args.diffusers_script).is_file() else None
    out = {
        "setting": "B2",
        "model": model,
        "dtype": "bf16" if args.half else "fp32",
        "resolution": args.resolution,
        "steps": args.steps,
        "timed_steps": f"{args.first_timed_step}-{args.steps}",
        "prompts": "instance",
        "gradient_checkpointing": False,
        "diffusers_script": script,
        "build_s": time.perf_counter() - t,
        "runs": {},
        "goal_speedup_vs_diffusers": GOALS["b2_speedup_vs_diffusers"],
        "goal_vram_vs_diffusers": GOALS["b2_vram_vs_diffusers"],
    }
    if script is None:
        out["note"] = f"diffusers' script not found at {args.diffusers_script}: its run was skipped (dry run)"
    result["b2"] = out
    save()
    env = {**os.environ, "VLGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for tool in ("vlgen", "diffusers") if script else ("vlgen",):
        spec = {"model": model["path"], "data": str(data), "out": str(work / f"run-{tool}"), "steps": args.steps,
                "prompts": "instance", "gc": False, "caches": tool == "vlgen", "resolution": args.resolution,
                "mixed_precision": "bf16" if args.half else "no", "first_timed_step": args.first_timed_step,
                "data_images": str(data.with_name(data.name + "-images")),
                "data_captions": str(data.with_name(data.name + "-captions"))}  # fmt: skip
        shutil.rmtree(spec["out"], ignore_errors=True)  # vlgen refuses an output dir holding another run
        try:
            run = b2.run_one(tool, spec, env, script)
        except SystemExit as e:  # run_one's one-line failure, with the log's tail
            out["runs"][tool] = {"error": str(e.code)[-3000:]}
            save()
            raise
        run.setdefault("peak_vram_mib", None)  # None on CPU
        out["runs"][tool] = run
        vram = f", peak VRAM {run['peak_vram_mib']:.0f} MiB" if run["peak_vram_mib"] else ""
        print(f"  B2 {tool}: {run['s_per_step']:.3f} s/step, step 1 ends at {run['first_step_end_s']:.1f} s{vram}",
              file=sys.stderr, flush=True)  # fmt: skip
        save()
    v, d = out["runs"]["vlgen"], out["runs"].get("diffusers")
    out["speedup_vs_diffusers"] = d["s_per_step"] / v["s_per_step"] if d else None
    out["vram_vs_diffusers"] = v["peak_vram_mib"] / d["peak_vram_mib"] if d and d["peak_vram_mib"] else None
    out["goal_met"] = (
        None
        if out["speedup_vs_diffusers"] is None or out["vram_vs_diffusers"] is None
        else out["speedup_vs_diffusers"] >= GOALS["b2_speedup_vs_diffusers"]
        and out["vram_vs_diffusers"] <= GOALS["b2_vram_vs_diffusers"]
    )
    return out


# ---------------------------------------------------------------------------------------------- table
def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def table(result: dict) -> str:
    env = result["environment"]
    where = f"{env['gpu']}, CUDA {env['cuda']}" if env["gpu"] else "CPU"
    lines = [
        f"GPU check ({'DRY RUN, tiny models, ' if result['dry_run'] else ''}{where}; torch "
        f"{env['versions']['torch']}, transformers {env['versions']['transformers']}, "
        f"diffusers {env['versions']['diffusers']})",
        f"{'bench':6s}{'measure':34s}{'vlgen':>10s}  {'reference':24s}{'ratio':>8s}  {'goal':9s}{'met':>4s}",
    ]

    def row(bench, measure, mine, ref_name, ref, ratio, goal, met) -> None:
        met_s = "-" if met is None else ("yes" if met else "no")
        lines.append(f"{bench:6s}{measure:34s}{mine:>10s}  {ref_name + ' ' + ref:24s}{ratio:>8s}  {goal:9s}{met_s:>4s}")

    if "b1" in result:
        r = result["b1"]
        s = r["s_per_image"]
        row("B1", f"s/image, {r['dtype']}, {r['images']} images", _f(s["vlgen_caption"], ".4f"), "pipeline",
            _f(s["pipeline"], ".4f"), _f(r["vlgen_speedup_vs_pipeline"], ".2f") + "x",
            f">= {GOALS['b1_speedup_vs_pipeline']:g}x", r["goal_met"])  # fmt: skip
        row("B1", "s/image vs plain generate, batch 8", _f(s["vlgen_caption"], ".4f"), "generate",
            _f(s["generate_batch8"], ".4f"), _f(r["vlgen_speedup_vs_generate_batch8"], ".2f") + "x",
            "", None)  # fmt: skip
    if "b2" in result and "vlgen" in result["b2"]["runs"] and "error" not in result["b2"]["runs"]["vlgen"]:
        r = result["b2"]
        v, d = r["runs"]["vlgen"], r["runs"].get("diffusers") or {}
        speed = r.get("speedup_vs_diffusers")
        vram = r.get("vram_vs_diffusers")
        met_speed = None if speed is None else speed >= GOALS["b2_speedup_vs_diffusers"]
        met_vram = None if vram is None else vram <= GOALS["b2_vram_vs_diffusers"]
        row("B2", f"s/step, {r['dtype']}, {r['resolution']} px, steps {r['timed_steps']}", _f(v["s_per_step"], ".3f"),
            "diffusers", _f(d.get("s_per_step"), ".3f"), _f(speed, ".2f") + ("x" if speed else ""),
            f">= {GOALS['b2_speedup_vs_diffusers']:g}x", met_speed)  # fmt: skip
        row("B2", "peak VRAM MiB (max_memory_allocated)", _f(v["peak_vram_mib"], ".0f"), "diffusers",
            _f(d.get("peak_vram_mib"), ".0f"), _f(vram, ".2f") + ("x" if vram else ""),
            f"<= {GOALS['b2_vram_vs_diffusers']:g}x", met_vram)  # fmt: skip
        row("B2", "set-up to end of step 1, s", _f(v["first_step_end_s"], ".1f"), "diffusers",
            _f(d.get("first_step_end_s"), ".1f"), "", "", None)  # fmt: skip
    if "b1" in result:
        lines.append(f"B1 captions identical to plain generate: {result['b1']['captions_identical']}")
    if result.get("b2", {}).get("note"):
        lines.append(f"B2: {result['b2']['note']}")
    lines.append(f"elapsed {result['elapsed_s']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny models, a few steps (the test suite's run)")
    ap.add_argument("--out", type=Path, help="JSON (default: benchmarks/results/gpu_check.json; dry run: in --work)")
    ap.add_argument("--work", type=Path, help="models, data and run folders (default: $TMPDIR/vlgen-gpu-check[-dry])")
    ap.add_argument("--diffusers-script", default=str(DIFFUSERS_SCRIPT), help="train_dreambooth_lora_sdxl.py")
    ap.add_argument(
        "--half", action=argparse.BooleanOptionalAction, default=None,
        help="B1 in fp16, B2 in bf16 (default on the GPU; a dry run is fp32 unless --half: CPU half precision is "
        "several times slower, but it checks the dtype handling the GPU run needs)",
    )  # fmt: skip
    ap.add_argument("--skip", action="append", default=[], choices=["b1", "b2"])
    ap.add_argument("--images", type=int, help="B1 images (default 32, dry run 8)")
    ap.add_argument("--repeats", type=int, help="B1 repeats (default 3, dry run 1)")
    ap.add_argument("--max-new-tokens", type=int, help=f"B1 caption length (default {b1.MAX_NEW_TOKENS}, dry run 5)")
    ap.add_argument("--steps", type=int, help="B2 steps (default 30, dry run 3)")
    ap.add_argument("--resolution", type=int, help="B2 resolution (default 1024, dry run 64)")
    args = ap.parse_args(argv)
    dry = args.dry_run
    args.images = args.images or (8 if dry else 32)
    args.repeats = args.repeats or (1 if dry else 3)
    args.max_new_tokens = args.max_new_tokens or (5 if dry else b1.MAX_NEW_TOKENS)
    args.steps = args.steps or (3 if dry else 30)
    args.resolution = args.resolution or (64 if dry else 1024)
    args.half = not dry if args.half is None else args.half
    args.first_timed_step = 2 if args.steps < 10 else 6  # SPEC B2: steps 6-30
    tmp_root = Path(os.environ.get("TMPDIR", "/tmp"))
    args.work = args.work or tmp_root / ("vlgen-gpu-check-dry" if dry else "vlgen-gpu-check")
    args.out = args.out or (args.work / "gpu_check.json" if dry else HERE / "results" / "gpu_check.json")
    if args.images < 8:
        ap.error(f"--images must be at least 8 (SPEC B1), got {args.images}")
    if args.steps < 3:
        ap.error(f"--steps must be at least 3 (two timed steps), got {args.steps}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    preflight(args)
    import torch

    device = "cpu" if dry else "cuda"
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict = {"kit": "gpu_check", "dry_run": dry, "complete": False, "goals": GOALS,
                    "environment": environment(device), "elapsed_s": 0.0}  # fmt: skip

    def save() -> None:
        result["elapsed_s"] = time.perf_counter() - T0
        b1.write_json(result, args.out)

    if dry:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        if "b1" not in args.skip:
            print("B1 (captioning, fp16) ...", file=sys.stderr, flush=True)
            result["b1"] = run_b1(args, device)
            result["b1"]["elapsed_s"] = time.perf_counter() - T0
            save()
        if "b2" not in args.skip:
            print("B2 (DreamBooth-LoRA step, bf16) ...", file=sys.stderr, flush=True)
            result["b2"] = run_b2(args, result, save)
        result["complete"] = True
    finally:
        save()
        print(table(result))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
