"""SPEC.md setting B1: BLIP-base captioning throughput on CPU - vlgen caption vs transformers' pipeline.

    .venv/bin/python benchmarks/bench_caption_b1.py [--images 32] [--repeats 3] [--threads N] [--out PATH]

Model: `BlipForConditionalGeneration(BlipConfig())` with `vision_config.image_size = 384` (blip-base sizes,
224M parameters), random weights (seed 0); processor `vlgen.testing.blip.blip_processor(384)` (BlipImageProcessor,
bicubic 384x384, CLIP mean/std, + the bert-base-uncased vocab with [DEC]/[ENC]). Inputs: random RGB 640x480
PNGs on disk. Greedy, `max_new_tokens = min_new_tokens = 20`. Every method starts from the image files and ends
with caption strings. Rows, in s/image:
- vlgen_caption: `caption_images` (behind `vlgen caption`), the CLI's default --batch-size, `BlipCaptioner.generate`;
- pipeline: `pipeline("image-text-to-text", model=..., processor=...)` one image at a time, `text=""`;
- generate_batch8: plain `processor(...)` + `model.generate` + `batch_decode`, 8 images per call;
- encoder_eager / encoder_vlgen: `model.vision_model` alone (transformers' eager attention / vlgen's fast path:
  SDPA attention, chunks of 2 images on CPU),
  batches of 8, against the floor 112 GFLOP/image (ViT-B/16 at 384 px) / the fp32 rate of a 2048x2048 `torch.mm`.
Methods alternate within a repeat (the order rotates); medians over repeats. The machines are shared: the load
average is recorded, and only ratios from one run are meaningful. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks, when imported as a module
import _caption_bench as cb
from _caption_bench import default_batch_size as _default_batch_size  # gpu_check.py calls b1._default_batch_size
from _caption_bench import write_images, write_json

VIT_B16_384_GFLOP = 112.0  # 12 layers x (linear 8.2 + attention 1.0) GFLOP at 577 tokens, + patch embedding
MAX_NEW_TOKENS = 20


def build_b1(seed: int = 0):
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration

    from vlgen.testing.blip import blip_processor

    config = BlipConfig()
    config.vision_config.image_size = 384
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    return model, blip_processor(384)


def fixed_length_captioner(model, processor, n_tokens: int):
    """vlgen's BlipCaptioner generating exactly `n_tokens` (min_new_tokens added: caption_images has no generate
    kwargs). `images` may be the pixel_values vlgen's input workers made (`image_transform`), as in `vlgen caption`."""
    from vlgen.captioning.blip import BlipCaptioner

    class FixedLengthBlip(BlipCaptioner):
        def generate(self, images, num_beams=1, max_new_tokens=30, **kw):
            return super().generate(images, num_beams=num_beams, max_new_tokens=max_new_tokens, min_new_tokens=n_tokens)

    return FixedLengthBlip(model, processor)


def caption_methods(captioner, pipe, paths: list[Path], fixed: dict, batch_size: int, *, num_workers=None,
                    device="cpu", dtype=None) -> dict:  # fmt: skip
    """B1's three captioning paths, {name: () -> captions}: `vlgen caption`'s (caption_images + the captioner),
    transformers' pipeline one image per call, plain `model.generate` in batches of 8 (also gpu_check.py's)."""
    import torch
    from PIL import Image

    model, processor = captioner.model, captioner.processor

    def run_generate() -> list[str]:
        caps = []
        with torch.inference_mode():
            for s in range(0, len(paths), 8):
                ims = [Image.open(p).convert("RGB") for p in paths[s : s + 8]]
                pv = processor(images=ims, return_tensors="pt").pixel_values.to(device, dtype or model.dtype)
                ids = model.generate(pixel_values=pv, **fixed)
                caps += [" ".join(t.split()) for t in processor.batch_decode(ids, skip_special_tokens=True)]
        return caps

    return {
        "vlgen_caption": cb.caption_images_method(
            captioner, paths, batch_size, 1, fixed["max_new_tokens"], num_workers=num_workers
        ),
        "pipeline": cb.pipeline_method(pipe, paths, fixed, text=""),
        "generate_batch8": run_generate,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 32 = vlgen caption's default batch (greedy): fewer images would never fill it, and a real job (a folder)
    # has many more. SPEC B1 asks for 8 or more.
    ap.add_argument("--images", type=int, default=32, help="at least 8 (SPEC B1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--batch-size", type=int, default=None, help="vlgen's batch (default: vlgen caption's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-workers", type=int, default=None, help="vlgen's input workers (default: vlgen caption's)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_caption_b1.json")
    args = ap.parse_args(argv)
    if args.images < 8:
        ap.error(f"--images must be at least 8 (SPEC B1), got {args.images}")

    import torch
    from PIL import Image
    from transformers import pipeline

    from vlgen.captioning.blip_fast import fast_generation

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size = args.batch_size or _default_batch_size()
    model, processor = build_b1(args.seed)
    fixed = cb.fixed_kwargs(MAX_NEW_TOKENS)

    captioner = fixed_length_captioner(model, processor, MAX_NEW_TOKENS)
    pipe = pipeline("image-text-to-text", model=model, processor=processor)
    run_matmul = cb.matmul_meter()

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.images, args.seed)
        pv_all = processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt").pixel_values

        def run_encoder(vlgen: bool):
            def f():  # batches of 8; vlgen's fast path (SDPA, in chunks on CPU) as BlipCaptioner.generate runs it
                with torch.inference_mode(), fast_generation(model) if vlgen else nullcontext():
                    for s in range(0, len(pv_all), 8):
                        model.vision_model(pixel_values=pv_all[s : s + 8])

            return f

        methods = {
            **caption_methods(captioner, pipe, paths, fixed, batch_size, num_workers=args.num_workers),
            "encoder_eager": run_encoder(False),
            "encoder_vlgen": run_encoder(True),
        }
        # warm-up (first-call allocations, lazy imports, kernel selection) of every path, on 2 images
        with torch.inference_mode():
            model.generate(pixel_values=pv_all[:2], **fixed)
            with fast_generation(model):
                model.vision_model(pixel_values=pv_all[:2])
        captioner.generate([Image.open(p).convert("RGB") for p in paths[:2]], max_new_tokens=MAX_NEW_TOKENS)
        pipe(str(paths[0]), text="", generate_kwargs=fixed)
        run_matmul()

        def write_so_far(timings: cb.Timings, repeats_done: int) -> None:
            write_json(summarise(args, batch_size, timings, repeats_done), args.out)

        timings = cb.alternate(methods, dict.fromkeys(methods, args.images), args.repeats, run_matmul, write_so_far)

    result = summarise(args, batch_size, timings, args.repeats)
    _print_table(result)
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return result


def summarise(args, batch_size: int, timings: cb.Timings, repeats_done: int) -> dict:
    import torch

    times, captions = timings.times, timings.captions()
    med = cb.medians(times)
    rate = statistics.median(timings.rates)
    floor = VIT_B16_384_GFLOP / rate
    result = {
        "setting": "B1",
        "images": args.images,
        "repeats": repeats_done,
        "repeats_requested": args.repeats,
        "vlgen_batch_size": batch_size,
        "vlgen_num_workers": "default" if args.num_workers is None else args.num_workers,
        "threads": torch.get_num_threads(),
        "matmul_gflops": rate,
        "encoder_floor_s_per_image": floor,
        "s_per_image": med,
        "s_per_image_all": times,
        "encoder_vs_floor": {k: med[k] / floor for k in ("encoder_eager", "encoder_vlgen")},
        "vlgen_speedup_vs_pipeline": med["pipeline"] / med["vlgen_caption"],
        "vlgen_speedup_vs_pipeline_per_repeat": cb.per_repeat_ratio(times, "pipeline", "vlgen_caption"),
        "vlgen_speedup_vs_generate_batch8": med["generate_batch8"] / med["vlgen_caption"],
        "captions_identical": {k: captions[k] == captions["generate_batch8"] for k in ("vlgen_caption", "pipeline")},
        "example_caption": captions["generate_batch8"][0],
        "loadavg_1min": cb.load_summary(timings.load),
        "versions": cb.versions(),
        "machine": cb.machine(),
    }
    return result


def _print_table(r: dict) -> None:
    med, floor = r["s_per_image"], r["encoder_floor_s_per_image"]
    print(
        f"\nB1: {r['images']} images 640x480 -> 384, greedy 20 tokens, {r['threads']} threads, median of "
        f"{r['repeats']}; matmul {r['matmul_gflops']:.0f} GFLOP/s; load avg {r['loadavg_1min']['median']:.1f}"
    )
    notes = {
        "vlgen_caption": f"batch {r['vlgen_batch_size']}; {r['vlgen_speedup_vs_pipeline']:.2f}x pipeline images/s",
        "pipeline": "one image per call",
        "generate_batch8": "plain model.generate",
        "encoder_eager": f"{r['encoder_vs_floor']['encoder_eager']:.2f}x floor",
        "encoder_vlgen": f"{r['encoder_vs_floor']['encoder_vlgen']:.2f}x floor (SDPA, chunks)",
    }
    cb.print_rows(med, notes, floor, f"{VIT_B16_384_GFLOP:.0f} GFLOP / matmul rate")
    cb.print_per_repeat("vlgen caption vs pipeline", r["vlgen_speedup_vs_pipeline_per_repeat"])
    print(f"captions identical to plain generate: {r['captions_identical']}")


if __name__ == "__main__":
    main()
