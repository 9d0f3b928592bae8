"""Benchmark B3 (benchmarks/README.md): one DreamBooth-LoRA step on reduced FLUX.1-dev (CPU, fp32).

    .venv/bin/python benchmarks/bench_lora_b3.py [--configs benchmarks/reduced-flux] [--repeats 1] [--steps 30]
        [--variants all] [--max-sequence-length 128] [--threads N] [--diffusers-script PATH] [--dry-run]
        [--out benchmarks/results/bench_lora_b3.json]

Model: the configs in benchmarks/reduced-flux/ (FLUX.1-dev's block structure at reduced width: double- and
single-stream FluxTransformer2DModel blocks with guidance embeddings, a CLIP and a T5 text encoder, a 4-level
16-channel AutoencoderKL; see its README.md), random weights seeded with 0, written once as a FluxPipeline
directory with the tiny CLIP and T5 tokenizers of vlgen.testing. Data: 8 synthetic 256x256 icons and the
instance prompt "a 3D icon in the style of TOK" for every image. Training: batch 1, no accumulation, fp32,
rank 4, lr 1e-4 constant, no warm-up, uniform flow-matching timesteps (weighting scheme none), guidance input
1.0, T5 sequence length 128 for both tools, seed 0, 30 steps; with and without gradient checkpointing.
Both tools cache the VAE latents (vlgen by default, diffusers' script with --cache_latents) and encode the
instance prompt before the first step (vlgen's text-embedding cache; the script does this by itself when the
text encoder is not trained and the prompt is the instance prompt; but see "Not the same work" below).

vlgen runs as `vlgen train lora` (the CLI, called in-process by this file's child after the step hook is
registered: `vlgen.cli.main(argv)`); diffusers' examples/dreambooth/train_dreambooth_lora_flux.py (a copy
outside this repository, e.g. from `git show 58eb52c:examples/dreambooth/train_dreambooth_lora_flux.py`;
never vendored here) runs unmodified through runpy as __main__. `--dry-run` prints both command lines per
variant and exits without building anything.

Timing is B2's (bench_lora_b2.py, whose helpers this file uses): each run is its own process; a global torch
optimizer-step hook, registered before the training code runs, stamps the end of every optimizer step for
both tools; reported are the median s/step over steps 6..N, the time from process start to the end of step 1
(imports and caches included), and peak RSS (ru_maxrss of the child from os.wait4). A second hook stamps the
process's CPU time at the same moments: CPU s/step (all threads) moves less with a shared machine's load.
Runs alternate (vlgen, then diffusers, per variant, per repeat); the paired ratio is each vlgen run against the
diffusers run right after it. The JSON is rewritten after every run ("complete": false until the last).
Each run's LoRA file is opened afterwards: both tools must have written the same tensor names (the same
adapted modules).

Not the same work, as the script is written (commit 58eb52c): it computes the instance prompt's embeddings
before training and `del`s its text encoders, but the lists `text_encoders` / `tokenizers` still hold them, and
its loop calls `compute_text_embeddings(prompts, ...)` on every step in this case, so CLIP and T5 stay in
memory and run (no_grad) once per step. vlgen uses the cached embeddings and frees both encoders.
"""

from __future__ import annotations

import argparse
import hashlib
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
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_lora_b2, also when this file is imported as a module (tests)

import bench_lora_b2 as b2  # noqa: E402 - stdlib-only at import

TRIGGER = b2.TRIGGER  # "a 3D icon in the style of TOK"
VARIANTS = [False, True]  # gradient checkpointing off / on (instance prompt, both caches, in both tools)
COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "scheduler")
SETTINGS = {"resolution": 256, "batch": 1, "rank": 4, "lr": 1e-4, "guidance_scale": 1.0, "dtype": "fp32",
            "weighting_scheme": "none", "seed": 0}  # fmt: skip


def configs_digest(configs: Path) -> str:
    """Hash of the config files: a built model directory is reused only for the configs it was built from."""
    h = hashlib.sha256()
    for name in COMPONENTS:
        for f in sorted((configs / name).glob("*.json")):
            h.update(f"{name}/{f.name}".encode() + f.read_bytes())
    return h.hexdigest()[:12]


def check_tokenizers(te_config, t5_config, clip_tok, t5_tok) -> None:
    """The committed text-encoder configs must fit the tokenizers vlgen.testing builds (vocab and special ids)."""
    from vlgen.testing.clip import clip_text_kwargs

    want = clip_text_kwargs(clip_tok)
    got = {k: getattr(te_config, k) for k in want}
    if got != want:
        raise SystemExit(f"text_encoder/config.json {got} does not fit vlgen.testing.clip.clip_tokenizer() {want}")
    got_ids, want_ids = (t5_config.pad_token_id, t5_config.eos_token_id), (t5_tok.pad_token_id, t5_tok.eos_token_id)
    if t5_config.vocab_size < len(t5_tok) or got_ids != want_ids:
        raise SystemExit(
            f"text_encoder_2/config.json (vocab_size {t5_config.vocab_size}, pad/eos ids {got_ids}) does not fit "
            f"vlgen.testing.flux.t5_tokenizer() ({len(t5_tok)} tokens, pad/eos ids {want_ids})"
        )


def build_model(configs: Path, out: Path, seed: int = 0) -> Path:
    """A FluxPipeline directory with random weights (torch seed `seed`, components built in COMPONENTS order)
    from the reduced-Flux configs, and vlgen.testing's tiny CLIP (pads with <|endoftext|>) and T5 tokenizers."""
    if (out / "model_index.json").is_file():
        return out
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from vlgen.testing.clip import clip_tokenizer
    from vlgen.testing.flux import t5_tokenizer

    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    te_config = CLIPTextConfig.from_pretrained(configs / "text_encoder")
    t5_config = T5Config.from_pretrained(configs / "text_encoder_2")
    check_tokenizers(te_config, t5_config, tokenizer, tokenizer_2)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel.from_config(FluxTransformer2DModel.load_config(configs / "transformer"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
    text_encoder = CLIPTextModel(te_config)
    text_encoder_2 = T5EncoderModel(t5_config)
    scheduler_config = FlowMatchEulerDiscreteScheduler.load_config(configs / "scheduler")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    sizes = {n: sum(p.numel() for p in m.parameters()) / 1e6 for n, m in
             (("transformer", transformer), ("vae", vae), ("clip", text_encoder), ("t5", text_encoder_2))}  # fmt: skip
    print("reduced FLUX.1-dev: " + ", ".join(f"{n} {v:.2f}M" for n, v in sizes.items()) + f" -> {out}", file=sys.stderr)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    tmp.rename(out)
    return out


def vlgen_argv(spec: dict) -> list[str]:
    """`vlgen train lora`'s arguments for B3 (the same settings as `diffusers_argv`); caches named explicitly."""
    argv = [
        "train", "lora", "--base", spec["model"], "--data", spec["data"], "--out", spec["out"],
        "--instance-prompt", TRIGGER, "--resolution", "256", "--train-batch-size", "1",
        "--gradient-accumulation-steps", "1", "--rank", "4", "--learning-rate", "1e-4", "--lr-scheduler", "constant",
        "--lr-warmup-steps", "0", "--max-train-steps", str(spec["steps"]), "--mixed-precision", "no", "--seed", "0",
        "--max-sequence-length", str(spec["max_sequence_length"]), "--guidance-scale", "1.0",
        "--weighting-scheme", "none", "--cache-latents", "--cache-text-embeddings", "--num-validation-images", "0",
        "--checkpointing-steps", "100000",
    ]  # fmt: skip
    argv.append("--gradient-checkpointing" if spec["gc"] else "--no-gradient-checkpointing")
    return argv


def diffusers_argv(spec: dict) -> list[str]:
    """train_dreambooth_lora_flux.py's arguments for B3. No --validation_prompt: no validation; it still
    reloads the pipeline and the LoRA after the last step (outside the timed steps, inside peak RSS)."""
    argv = [
        "--pretrained_model_name_or_path", spec["model"], "--instance_data_dir", spec["data_images"],
        "--output_dir", spec["out"], "--instance_prompt", TRIGGER, "--resolution", "256", "--train_batch_size", "1",
        "--gradient_accumulation_steps", "1", "--rank", "4", "--learning_rate", "1e-4", "--lr_scheduler", "constant",
        "--lr_warmup_steps", "0", "--max_train_steps", str(spec["steps"]), "--mixed_precision", "no", "--seed", "0",
        "--max_sequence_length", str(spec["max_sequence_length"]), "--guidance_scale", "1.0",
        "--weighting_scheme", "none", "--cache_latents", "--checkpointing_steps", "100000",
    ]  # fmt: skip
    if spec["gc"]:
        argv.append("--gradient_checkpointing")
    return argv


def command(tool: str, spec: dict, script: str | None) -> list[str]:
    """The child process's command line (the benchmark's own file, so the step hook goes in first)."""
    if tool == "vlgen":
        return [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    return [sys.executable, str(Path(__file__).resolve()), "--run-diffusers", script or "SCRIPT", "--stamps",
            spec["stamps"], "--", *diffusers_argv(spec)]  # fmt: skip


def stamp_cpu(path: str) -> None:
    """Beside b2.stamp_steps' wall-clock stamps: the process's CPU time at the end of every optimizer step, into
    PATH (JSON, at exit). On a shared machine CPU s/step moves less with the load than wall s/step does."""
    import atexit

    from torch.optim.optimizer import register_optimizer_step_post_hook

    stamps: list[float] = []
    register_optimizer_step_post_hook(lambda *_: stamps.append(time.process_time()))
    atexit.register(lambda: Path(path).write_text(json.dumps(stamps)))


def cpu_stamps_path(stamps: str | Path) -> Path:
    return Path(stamps).with_name(Path(stamps).stem + "-cpu.json")


def stamp(spec: dict) -> None:
    """Both hooks, before the training code is imported: wall clock (B2's, identical for both tools) and CPU time."""
    b2.stamp_steps(spec["stamps"])
    stamp_cpu(str(cpu_stamps_path(spec["stamps"])))


def run_diffusers(script: str, argv: list[str], stamps: str) -> None:
    """b2.run_diffusers with the CPU-time stamps too: diffusers' script as __main__ in this process."""
    import runpy

    stamp({"stamps": stamps})
    sys.argv = [script, *argv]
    runpy.run_path(script, run_name="__main__")


def child(spec: dict) -> None:
    """One `vlgen train lora` run in this process, its optimizer steps stamped."""
    stamp(spec)
    from vlgen.cli import main

    sys.exit(main(vlgen_argv(spec)))


def lora_keys(out: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(out / "pytorch_lora_weights.safetensors", "pt") as f:
        return sorted(f.keys())


def run_one(tool: str, spec: dict, env: dict, script: str | None) -> dict:
    """One run as its own process; step times from its stamps file, peak RSS from os.wait4."""
    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)  # a run left by an earlier invocation (vlgen refuses to mix runs)
    # beside the run's output folder, not in it: vlgen refuses an --output-dir that holds other files
    stamps = out.with_name(f"{out.name}-stamps.json")
    stamps.parent.mkdir(parents=True, exist_ok=True)
    stamps.unlink(missing_ok=True)
    cpu_stamps_path(stamps).unlink(missing_ok=True)
    spec = {**spec, "stamps": str(stamps)}
    cmd = command(tool, spec, script)
    log = out.with_name(f"{out.name}-log.txt")
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    total = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{tool} run failed ({shlex.join(cmd)[:300]}...):\n{log.read_text()[-4000:]}")
    data = json.loads(stamps.read_text())
    t0, st = data["t0"], data["stamps"]
    if len(st) != spec["steps"]:
        sys.exit(f"{tool}: {len(st)} optimizer steps stamped, expected {spec['steps']} (see {log})")
    dts = [b - a for a, b in zip(st, st[1:], strict=False)]  # dts[i-2]: step i (i >= 2)
    timed = dts[spec["first_timed_step"] - 2 :]
    cpu = json.loads(cpu_stamps_path(stamps).read_text())
    cpu_timed = [b - a for a, b in zip(cpu, cpu[1:], strict=False)][spec["first_timed_step"] - 2 :]
    keys = lora_keys(out)
    return {
        "tool": tool,
        "gc": spec["gc"],
        "s_per_step": statistics.median(timed),
        "mean_s_per_step": statistics.fmean(timed),
        "step_s": dts,  # steps 2..N
        "cpu_s_per_step": statistics.median(cpu_timed),  # CPU time of all the process's threads
        "first_step_end_s": st[0] - t0,  # process start (imports, model load, caches) to the end of step 1
        "after_last_step_s": total - (st[-1] - t0),  # saving, and diffusers' pipeline reload
        "total_s": total,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_user_s": usage.ru_utime,  # the whole process: set-up and saving included
        "cpu_sys_s": usage.ru_stime,
        "minor_page_faults": usage.ru_minflt,
        "lora_tensors": len(keys),
        "lora_keys_sha": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12],
    }


def summarise(args, chosen: list[bool], runs: list[dict], script: str | None, complete: bool, quiet: bool) -> None:
    """Rows (medians per variant, ratios) and the runs so far into args.out; the table on stdout unless quiet."""

    def med(tool: str, gc: bool, key: str) -> float | None:
        xs = [x[key] for x in runs if (x["tool"], x["gc"]) == (tool, gc)]
        return statistics.median(xs) if xs else None

    def say(line: str) -> None:
        if not quiet:
            print(line)

    rows = []
    say(f"\nB3 (reduced FLUX.1-dev, 256 px, batch 1, fp32, rank 4, T5 length {args.max_sequence_length}, "
        f"{args.steps} steps, s/step: median of steps {args.first_timed_step}-{args.steps}), "
        f"medians of {args.repeats}")  # fmt: skip
    say(f"{'grad ckpt':9s} {'s/step':>7s} {'diffusers':>9s} {'speed-up':>8s} {'paired':>6s} {'CPU s/step':>10s} "
        f"{'diffusers':>9s} {'CPU ratio':>9s} {'step1 s':>7s} {'diffusers':>9s} {'RSS MiB':>7s} {'diffusers':>9s} "
        f"{'RSS ratio':>9s}")  # fmt: skip

    def f(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "-"

    for gc in chosen:
        s = med("vlgen", gc, "s_per_step")
        if s is None:  # not run yet (partial results, written after every run)
            continue
        cpu, first, rss = (med("vlgen", gc, k) for k in ("cpu_s_per_step", "first_step_end_s", "peak_rss_mib"))
        ref_s, ref_cpu, ref_first, ref_rss = (
            med("diffusers", gc, k) for k in ("s_per_step", "cpu_s_per_step", "first_step_end_s", "peak_rss_mib")
        )
        speedup = ref_s / s if ref_s else None  # ratio of the medians
        cpu_ratio = ref_cpu / cpu if ref_cpu else None
        rss_ratio = rss / ref_rss if ref_rss else None
        paired = [d["s_per_step"] / v["s_per_step"] for v in runs for d in runs
                  if (v["tool"], d["tool"]) == ("vlgen", "diffusers") and v["repeat"] == d["repeat"]
                  and v["gc"] == d["gc"] == gc]  # fmt: skip
        paired_med = statistics.median(paired) if paired else None
        same_keys = {x["lora_keys_sha"] for x in runs if x["gc"] == gc}
        rows.append({"gradient_checkpointing": gc, "s_per_step": s, "cpu_s_per_step": cpu, "first_step_end_s": first,
                     "peak_rss_mib": rss, "diffusers_s_per_step": ref_s, "diffusers_cpu_s_per_step": ref_cpu,
                     "diffusers_first_step_end_s": ref_first, "diffusers_peak_rss_mib": ref_rss,
                     "speedup_vs_diffusers": speedup, "cpu_speedup_vs_diffusers": cpu_ratio,
                     "rss_vs_diffusers": rss_ratio, "speedup_paired_per_repeat": paired,
                     "speedup_paired_median": paired_med, "same_lora_tensors": len(same_keys) == 1})  # fmt: skip
        say(f"{gc!s:9s} {s:7.3f} {f(ref_s, '.3f'):>9s} {f(speedup, '.2f'):>8s} {f(paired_med, '.2f'):>6s} "
            f"{cpu:10.3f} {f(ref_cpu, '.3f'):>9s} {f(cpu_ratio, '.2f'):>9s} {first:7.1f} {f(ref_first, '.1f'):>9s} "
            f"{rss:7.0f} {f(ref_rss, '.0f'):>9s} {f(rss_ratio, '.2f'):>9s}")  # fmt: skip
        if len(same_keys) > 1:
            say(f"  warning: the runs with gradient checkpointing={gc} wrote different LoRA tensor names")
    import diffusers
    import torch
    import transformers

    result = {
        "benchmark": "B3 DreamBooth-LoRA step, reduced FLUX.1-dev",
        "settings": {
            **SETTINGS,
            "steps": args.steps,
            "first_timed_step": args.first_timed_step,
            "repeats": args.repeats,
            "complete": complete,  # False: interrupted, rows from the runs so far
            "max_sequence_length": args.max_sequence_length,
            "configs": str(args.configs),
            "configs_digest": configs_digest(args.configs),
            "diffusers_script": script,
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "threads": args.threads or torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },
        "rows": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    say(f"\nwrote {args.out}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=Path, default=HERE / "reduced-flux")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vlgen-bench-b3")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--first-timed-step", type=int, default=6, help="s/step is the median over steps N..--steps")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--variants", default="all", help="'all' or comma-separated indices into VARIANTS (0: no "
                    "gradient checkpointing, 1: with)")  # fmt: skip
    ap.add_argument("--max-sequence-length", type=int, default=128, help="T5 tokens per prompt, both tools")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_lora_b3.json")
    ap.add_argument(
        "--diffusers-script",
        help="path to diffusers' examples/dreambooth/train_dreambooth_lora_flux.py (outside this repo): run it at "
        "the same settings, alternating with vlgen; without it only vlgen runs",
    )
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every run (default: torch's default)")
    ap.add_argument("--dry-run", action="store_true", help="print both tools' command lines per variant and exit")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--run-diffusers", help=argparse.SUPPRESS)
    ap.add_argument("--stamps", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 2 <= args.first_timed_step <= args.steps:
        ap.error(f"--first-timed-step {args.first_timed_step} must be between 2 and --steps {args.steps}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child or args.run_diffusers:
        b2.T0 = T0  # b2.stamp_steps measures from b2.T0: from this process's start, as B2's children do
    if args.child:
        return child(json.loads(args.child))
    if args.run_diffusers:
        return run_diffusers(args.run_diffusers, args.rest, args.stamps)
    if not (args.configs / "transformer" / "config.json").is_file():
        sys.exit(f"--configs {args.configs}: no reduced-Flux configs there (see benchmarks/README.md, B3)")
    script = str(Path(args.diffusers_script).resolve()) if args.diffusers_script else None
    if script and not args.dry_run and not Path(script).is_file():
        sys.exit(f"--diffusers-script {script}: no such file")
    chosen = VARIANTS if args.variants == "all" else [VARIANTS[int(i)] for i in args.variants.split(",")]
    model = args.work / f"reduced-flux-seed0-{configs_digest(args.configs)}"
    data = args.work / "icons-256"
    env = {**os.environ, "VLGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.threads:  # both tools alike; default: torch's own choice (the number of cores)
        env["OMP_NUM_THREADS"] = str(args.threads)
    plan = [(tool, gc) for gc in chosen for tool in ("vlgen", "diffusers") if tool == "vlgen" or script]

    def spec_of(r: int, tool: str, gc: bool) -> dict:
        # vlgen reads the icons' own folder (it refuses links out of --data); the script gets a folder of links
        # to the PNGs alone (it opens every file of --instance_data_dir as an image): the same 8 images.
        return {"model": str(model), "data": str(data), "data_images": str(data.with_name(data.name + "-images")),
                "out": str(args.work / f"run-{r}-{tool}-gc{int(gc)}"), "steps": args.steps, "gc": gc,
                "max_sequence_length": args.max_sequence_length,
                "first_timed_step": args.first_timed_step}  # fmt: skip

    if args.dry_run:
        for gc in chosen:
            spec = spec_of(0, "vlgen", gc)
            print(f"# vlgen, gradient checkpointing {gc}")
            print(shlex.join([sys.executable, "-m", "vlgen", *vlgen_argv(spec)]))
            spec = spec_of(0, "diffusers", gc)
            print(f"# diffusers, gradient checkpointing {gc}")
            print(shlex.join([sys.executable, script or "train_dreambooth_lora_flux.py", *diffusers_argv(spec)]))
        return None
    build_model(args.configs, model)
    b2.build_data(data)
    runs: list[dict] = []
    for r in range(args.repeats):
        for tool, gc in plan:  # alternate tools and variants (drift on a shared box is +-15-30%)
            load = os.getloadavg()[0]
            runs.append({"repeat": r, "load_avg_1min_before": load, **run_one(tool, spec_of(r, tool, gc), env, script)})
            x = runs[-1]
            print(f"  [{r}] {tool:9s} gc={gc!s:5s} {x['s_per_step']:.3f} s/step ({x['cpu_s_per_step']:.3f} CPU), "
                  f"step 1 ends at {x['first_step_end_s']:.1f} s, {x['peak_rss_mib']:.0f} MiB",
                  file=sys.stderr)  # fmt: skip
            last = r == args.repeats - 1 and (tool, gc) == plan[-1]
            summarise(args, chosen, runs, script, complete=last, quiet=not last)  # JSON after every run
    return None


if __name__ == "__main__":
    main()
