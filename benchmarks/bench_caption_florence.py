"""Issue 18 item 6: Florence-2-base captioning throughput on CPU - vlgen caption vs transformers' pipeline.

    .venv/bin/python benchmarks/bench_caption_florence.py [--images 16] [--repeats 3] [--threads N] [--out PATH]
    .venv/bin/python benchmarks/bench_caption_florence.py --tiny      # the same code on the tiny model (seconds)

B1's method (bench_caption_b1.py) on Florence-2-base. Model: `published_model("florence-2-base")`
(`Florence2ForConditionalGeneration` at the published size: DaViT 90.4M + BART-base, 231.4M parameters), random
weights (seed 0); processor `florence2_processor(768, vocab_size=51328)` (CLIPImageProcessor, bicubic 768x768,
CLIP mean/std; the tiny BART BPE padded to the model's 51,328 ids, so every generated id decodes to its own word and
captions compare as text). Prompt `<CAPTION>`. Inputs: random RGB 640x480 PNGs on disk. Greedy,
`max_new_tokens = min_new_tokens = 20`: every method generates exactly 20 tokens (the 20th is the `</s>` that
Florence-2's `forced_eos_token_id` puts at the limit). Every method starts from the image files and ends with
caption strings. Rows, in s/image:
- vlgen_caption: `caption_images` (behind `vlgen caption`), the CLI's default --batch-size,
  `VisionLanguageCaptioner` with its Florence-2 fast path (`vlgen.captioning.florence_fast`);
- pipeline: `pipeline("image-text-to-text", model=..., processor=...)` one image at a time, `text="<CAPTION>"`,
  `return_full_text=False` (transformers 5.24 runs native Florence-2 through it);
- generate_batch8: plain `processor(...)` + `model.generate` + `batch_decode`, 8 images per call;
- encoder_eager / encoder_vlgen: the vision tower (`model.model.vision_tower`) alone on the first
  `--encoder-images` images in batches of 8 (transformers' forward / vlgen's `davit_forward`), against its floor:
  the tower's GFLOP (convolutions, linears and attention matmuls, counted by torch's FlopCounterMode on the meta
  device: 379.8 at 768 px) / the fp32 rate of a 2048x2048 `torch.mm` measured in the same run.
Methods alternate within a repeat (the order rotates); medians over repeats. Besides wall time each row records this
process's CPU seconds (user, system) and minor page faults per image (vlgen's input worker processes not included):
on a shared box the CPU time is the steadier number, and system time is where fresh-page faults show. Only ratios
from one run are meaningful. Prints a table, writes JSON.
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
from _caption_bench import fixed_kwargs, write_images, write_json

MAX_NEW_TOKENS = 20
PROMPT = "<CAPTION>"
IMAGE_SIZE = 768
VOCAB_SIZE = 51328  # Florence-2-base's (florence-2-base.json)


def build_florence(seed: int = 0, tiny: bool = False):
    """(model, processor): Florence-2-base at its published size with random weights, or the tiny test model."""
    import torch

    from vlgen.testing.florence2 import florence2_processor, tiny_florence2
    from vlgen.testing.published import published_model

    if tiny:
        return tiny_florence2(seed)
    torch.manual_seed(seed)
    model = published_model("florence-2-base", device="cpu")
    processor = florence2_processor(image_size=IMAGE_SIZE, vocab_size=VOCAB_SIZE)
    model.config.image_token_id = processor.tokenizer.image_token_id  # the tokenizer's <image> (last id)
    return model, processor


def vision_gflop(model, image_size: int) -> float:
    """GFLOP of one image through the vision tower (2 per multiply-add): convolutions, linears and the attention
    matmuls, counted with eager attention on a copy on the meta device (no memory, no compute)."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers.models.florence2.modeling_florence2 import Florence2VisionBackbone

    config = copy.deepcopy(model.config.vision_config)
    config._attn_implementation = "eager"  # SDPA's CPU kernels are not counted by FlopCounterMode
    with torch.device("meta"):
        tower = Florence2VisionBackbone(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        tower(torch.empty(1, 3, image_size, image_size, device="meta"))
    return counter.get_total_flops() / 1e9


def fixed_length_captioner(model, processor, n_tokens: int, fast_path: bool | None = None):
    """vlgen's VisionLanguageCaptioner generating exactly `n_tokens` (min_new_tokens added: caption_images passes
    no generate kwargs), with its Florence-2 fast path unless `fast_path=False`."""
    from vlgen.captioning.vlm import VisionLanguageCaptioner

    class FixedLengthVLM(VisionLanguageCaptioner):
        def caption_rows(self, images, num_beams=1, max_new_tokens=30, prompt=None, **kw):
            kw["min_new_tokens"] = n_tokens
            return super().caption_rows(images, num_beams, max_new_tokens, prompt=prompt, **kw)

    return FixedLengthVLM(model, processor, prompt=PROMPT, fast_path=fast_path)


def caption_methods(captioner, pipe, paths: list[Path], fixed: dict, batch_size: int, *, num_workers=None) -> dict:
    """The three captioning paths, {name: () -> captions}: `vlgen caption`'s (caption_images + the captioner),
    transformers' pipeline one image per call, plain `model.generate` in batches of 8."""
    import torch
    from PIL import Image

    model, processor = captioner.model, captioner.processor

    def run_generate() -> list[str]:
        caps = []
        with torch.inference_mode():
            for s in range(0, len(paths), 8):
                ims = [Image.open(p).convert("RGB") for p in paths[s : s + 8]]
                inputs = processor(images=ims, text=[PROMPT] * len(ims), return_tensors="pt")
                ids = model.generate(**inputs, **fixed)  # (B, 1 + n): </s> start, n new tokens
                if ids.shape[1] != 1 + fixed["max_new_tokens"]:
                    raise RuntimeError(f"generate made {ids.shape[1] - 1} tokens, not {fixed['max_new_tokens']}")
                caps += [" ".join(t.split()) for t in processor.batch_decode(ids, skip_special_tokens=True)]
        return caps

    return {
        "vlgen_caption": cb.caption_images_method(
            captioner, paths, batch_size, 1, fixed["max_new_tokens"], num_workers=num_workers
        ),
        "pipeline": cb.pipeline_method(pipe, paths, fixed, text=PROMPT, return_full_text=False),
        "generate_batch8": run_generate,
    }


def generate_logits_max_abs_diff(model, processor, images, fixed: dict) -> float:
    """Largest difference between the per-step logits of plain `generate` and of `generate` inside vlgen's
    Florence-2 fast path (the same tokens are forced on both: greedy, fixed length, identical captions)."""
    import torch

    from vlgen.captioning.florence_fast import fast_generation

    inputs = processor(images=images, text=[PROMPT] * len(images), return_tensors="pt")
    runs = []
    for fast in (False, True):
        with torch.inference_mode(), fast_generation(model) if fast else nullcontext():
            out = model.generate(**inputs, **fixed, output_scores=True, return_dict_in_generate=True)
        runs.append((out.sequences, torch.stack(out.scores, 1)))  # (B, 1 + n), (B, n, V)
    (ids_plain, plain), (ids_fast, fast_scores) = runs
    if not torch.equal(ids_plain, ids_fast):
        return float("inf")
    finite = torch.isfinite(plain) & torch.isfinite(fast_scores)  # forced / suppressed tokens are -inf in both
    return float((plain - fast_scores)[finite].abs().max())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16, help="at least 8 (as SPEC B1)")
    ap.add_argument("--encoder-images", type=int, default=8, help="images for the vision-tower-alone rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--batch-size", type=int, default=None, help="vlgen's batch (default: vlgen caption's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-workers", type=int, default=None, help="vlgen's input workers (default: vlgen caption's)")
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    ap.add_argument("--tiny", action="store_true", help="the tiny Florence-2 (64 px, 160x120 PNGs): plumbing only")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_caption_florence.json")
    args = ap.parse_args(argv)
    if args.images < 8:
        ap.error(f"--images must be at least 8, got {args.images}")

    import torch
    from PIL import Image
    from transformers import pipeline

    from vlgen.captioning.florence_fast import fast_generation

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size = args.batch_size or cb.default_batch_size()
    model, processor = build_florence(args.seed, tiny=args.tiny)
    image_size = processor.image_processor.size["height"]
    fixed = fixed_kwargs(args.max_new_tokens)
    gflop = vision_gflop(model, image_size)
    tower = model.model.vision_tower

    captioner = fixed_length_captioner(model, processor, args.max_new_tokens)
    if not captioner.fast_path:
        raise SystemExit("the Florence-2 fast path is off (VLGEN_FLORENCE_FAST_PATH or transformers' internals)")
    pipe = pipeline("image-text-to-text", model=model, processor=processor)
    run_matmul = cb.matmul_meter()

    with tempfile.TemporaryDirectory() as tmp:
        # --tiny: 160x120, under the 6x the 64 px input at which vlgen's decoder reduces images before the
        # processor (vlgen.data.images), so every method sees the same pixels, as 640x480 do at 768 px
        paths = write_images(Path(tmp), args.images, args.seed, (160, 120) if args.tiny else (640, 480))
        enc_paths = paths[: args.encoder_images]
        pv_enc = processor.image_processor(
            images=[Image.open(p).convert("RGB") for p in enc_paths], return_tensors="pt"
        ).pixel_values  # (n, 3, S, S)

        def run_encoder(vlgen: bool):
            def f():  # batches of 8; vlgen's tower as VisionLanguageCaptioner.generate runs it
                outs = []
                with torch.inference_mode(), fast_generation(model) if vlgen else nullcontext():
                    for s in range(0, len(pv_enc), 8):
                        outs.append(tower(pv_enc[s : s + 8]).last_hidden_state)
                return torch.cat(outs)

            return f

        methods = {
            **caption_methods(captioner, pipe, paths, fixed, batch_size, num_workers=args.num_workers),
            "encoder_eager": run_encoder(False),
            "encoder_vlgen": run_encoder(True),
        }
        per_method_images = {k: len(enc_paths) if k.startswith("encoder") else len(paths) for k in methods}
        # warm-up (first-call allocations, lazy imports, kernel selection) of every path, on 2 images
        with torch.inference_mode():
            inputs = processor(images=[Image.open(p).convert("RGB") for p in paths[:2]], text=[PROMPT] * 2,
                               return_tensors="pt")  # fmt: skip
            model.generate(**inputs, **fixed)
            with fast_generation(model):
                tower(pv_enc[:2])
        captioner.generate([Image.open(p).convert("RGB") for p in paths[:2]], max_new_tokens=args.max_new_tokens)
        pipe(str(paths[0]), text=PROMPT, generate_kwargs=fixed, return_full_text=False)
        run_matmul()

        def write_so_far(timings: cb.Timings, repeats_done: int) -> None:
            result = summarise(args, batch_size, gflop, image_size, timings)
            write_json({**result, "repeats": repeats_done}, args.out)

        timings = cb.alternate(methods, per_method_images, args.repeats, run_matmul, write_so_far)

        # At transformers' init a published-size model's captions hardly depend on the image, so equal captions say
        # little on their own: compare every step's logits of plain generate and vlgen's path on two images too.
        logits_diff = generate_logits_max_abs_diff(
            model, processor, [Image.open(p).convert("RGB") for p in paths[:2]], fixed
        )

    result = summarise(args, batch_size, gflop, image_size, timings)
    result["generate_logits_max_abs_diff"] = logits_diff
    _print_table(result)
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return result


def summarise(args, batch_size, gflop, image_size, timings: cb.Timings) -> dict:
    import torch

    times, captions = timings.times, timings.captions()
    med = cb.medians(times)
    rate = statistics.median(timings.rates)
    floor = gflop / rate
    ref_caps = captions["generate_batch8"]
    eager, fast = timings.outputs["encoder_eager"], timings.outputs["encoder_vlgen"]  # the tower's outputs
    return {
        "setting": "B1 method, Florence-2-base" + (" (TINY model: plumbing only)" if args.tiny else ""),
        "model": "tiny Florence-2 (vlgen.testing.florence2)" if args.tiny else "florence-2-base, random weights",
        "image_size": image_size,
        "images": args.images,
        "encoder_images": min(args.encoder_images, args.images),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "vlgen_batch_size": batch_size,
        "vlgen_num_workers": "default" if args.num_workers is None else args.num_workers,
        "threads": torch.get_num_threads(),
        "matmul_gflops": rate,
        "vision_gflop_per_image": gflop,
        "encoder_floor_s_per_image": floor,
        "s_per_image": med,
        "s_per_image_all": times,
        "cpu_s_per_image": cb.cpu_medians(timings.usage),
        "usage_per_image_all": timings.usage,
        "encoder_vs_floor": {k: med[k] / floor for k in ("encoder_eager", "encoder_vlgen")},
        "vlgen_speedup_vs_pipeline": med["pipeline"] / med["vlgen_caption"],
        "vlgen_speedup_vs_pipeline_per_repeat": cb.per_repeat_ratio(times, "pipeline", "vlgen_caption"),
        "vlgen_speedup_vs_generate_batch8": med["generate_batch8"] / med["vlgen_caption"],
        "generate_batch8_speedup_vs_pipeline": med["pipeline"] / med["generate_batch8"],
        "captions_identical": {k: captions[k] == ref_caps for k in ("vlgen_caption", "pipeline")},
        "encoder_outputs_allclose": bool(torch.allclose(fast, eager, rtol=1e-4, atol=1e-4)),
        "encoder_max_abs_diff": float((fast - eager).abs().max()),
        "example_caption": ref_caps[0],
        "loadavg_1min": cb.load_summary(timings.load),
        "versions": cb.versions(),
        "machine": cb.machine(),
    }


def _print_table(r: dict) -> None:
    med, floor, cpu = r["s_per_image"], r["encoder_floor_s_per_image"], r["cpu_s_per_image"]
    print(
        f"\n{r['setting']}: {r['images']} images 640x480 -> {r['image_size']}, greedy {r['max_new_tokens']} tokens, "
        f"{r['threads']} threads, median of {r['repeats']}; matmul {r['matmul_gflops']:.0f} GFLOP/s; "
        f"load avg {r['loadavg_1min']['median']:.1f}"
    )
    notes = {
        "vlgen_caption": f"batch {r['vlgen_batch_size']}; {r['vlgen_speedup_vs_pipeline']:.2f}x pipeline images/s",
        "pipeline": "one image per call",
        "generate_batch8": f"plain model.generate; {r['generate_batch8_speedup_vs_pipeline']:.2f}x pipeline",
        "encoder_eager": f"{r['encoder_vs_floor']['encoder_eager']:.2f}x floor",
        "encoder_vlgen": f"{r['encoder_vs_floor']['encoder_vlgen']:.2f}x floor (florence_fast.davit_forward)",
    }
    floor_note = f"{r['vision_gflop_per_image']:.1f} GFLOP / matmul rate"
    cb.print_rows(med, notes, floor, floor_note, cpu=cpu)
    cb.print_per_repeat("vlgen caption vs pipeline", r["vlgen_speedup_vs_pipeline_per_repeat"])
    print(f"captions identical to plain generate: {r['captions_identical']}; encoder outputs allclose: "
          f"{r['encoder_outputs_allclose']} (max abs diff {r['encoder_max_abs_diff']:.2e}); generate logits, "
          f"plain vs vlgen's path: max abs diff {r.get('generate_logits_max_abs_diff', float('nan')):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
