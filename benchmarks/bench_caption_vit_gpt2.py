"""Issue 19 item 5: ViT-GPT2 captioning throughput on CPU at B1's settings - vlgen caption vs transformers' pipeline.

    .venv/bin/python benchmarks/bench_caption_vit_gpt2.py [--images 32] [--repeats 3] [--threads N] [--num-beams 1]
    .venv/bin/python benchmarks/bench_caption_vit_gpt2.py --tiny      # the same code on the tiny model (seconds)

B1's method (bench_caption_b1.py) on nlconnect/vit-gpt2-image-captioning's architecture. Model:
`published_model("vit-gpt2")` (`VisionEncoderDecoderModel`: ViT-B/16 at 224 px + GPT-2 124M with cross-attention,
239M parameters), random weights (seed 0); image processor `vit_image_processor(224)` (ViTImageProcessor, bilinear
224x224, mean/std 0.5, as the checkpoint's); tokenizer `gpt2_tokenizer(vocab_size=50257)` (the tiny GPT-2 BPE padded
to GPT-2's 50,257 ids, `<|endoftext|>` = 50256 as bos/eos/pad/decoder start, so every generated id decodes to its own
word and captions compare as text). Inputs: random RGB 640x480 PNGs on disk. Greedy (B1; `--num-beams` for beam
search), `max_new_tokens = min_new_tokens = 20`. Every method starts from the image files and ends with caption
strings. Rows, in s/image:
- vlgen_caption: `caption_images` (behind `vlgen caption`), the CLI's default --batch-size, `VitGpt2Captioner` with
  its fast path (`vlgen.captioning.vit_gpt2_fast`);
- vlgen_caption_plain: the same with `fast_path=False` (transformers' own `generate` behind vlgen's batching);
- pipeline: `pipeline("image-text-to-text", model=..., processor=...)` one image at a time, `text=""`. transformers
  5 removed the `image-to-text` pipeline and its successor wants a `ProcessorMixin`, which VisionEncoderDecoder
  checkpoints do not have: `CaptionProcessor` below is the smallest one that runs (the image processor's
  `pixel_values` plus `decoder_input_ids` = the decoder start token, where `generate` starts anyway);
- generate_batch8: plain image processor + `model.generate` + `batch_decode`, 8 images per call;
- encoder: the ViT alone (`model.encoder`, which the fast path leaves as it is) in batches of vlgen's batch size,
  against its floor: the encoder's GFLOP (counted by torch's FlopCounterMode on the meta device: 35.1 at 224 px) /
  the fp32 rate of a 2048x2048 `torch.mm` measured in the same run.
Methods alternate within a repeat (the order rotates); medians over repeats. A random GPT-2 of this size writes
nearly the same caption for every image, so besides comparing the captions of every method, plain `generate` and the
fast path are compared step by step (sequences and every step's logits) on the first 4 images. Besides wall time
each row records this process's CPU seconds (user, system) and minor page faults per image (vlgen's input worker
processes not included). Only ratios from one run are meaningful. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks, when imported as a module
import _caption_bench as cb
from _caption_bench import fixed_kwargs, write_images, write_json

MAX_NEW_TOKENS = 20
IMAGE_SIZE = 224
VOCAB_SIZE = 50257  # GPT-2's (vit-gpt2.json)


def build_vit_gpt2(seed: int = 0, tiny: bool = False):
    """(model, image_processor, tokenizer): the published architecture with random weights, or the tiny test model."""
    import torch

    from vlgen.testing.published import published_model
    from vlgen.testing.vit_gpt2 import gpt2_tokenizer, tiny_vit_gpt2, vit_image_processor

    if tiny:
        return tiny_vit_gpt2(seed)
    torch.manual_seed(seed)
    model = published_model("vit-gpt2", device="cpu")
    return model, vit_image_processor(IMAGE_SIZE), gpt2_tokenizer(model_max_length=1024, vocab_size=VOCAB_SIZE)


def caption_processor(image_processor, tokenizer):
    """A `ProcessorMixin` for `pipeline("image-text-to-text")` over a VisionEncoderDecoder captioner (see above)."""
    import torch
    from transformers import BatchFeature, TrOCRProcessor

    class CaptionProcessor(TrOCRProcessor):  # TrOCR's: an image processor and a tokenizer, nothing else
        def __call__(self, images=None, text=None, **kwargs):
            pv = self.image_processor(images=images, return_tensors="pt").pixel_values  # (B, 3, 224, 224)
            start = torch.full((len(pv), 1), self.tokenizer.eos_token_id)  # <|endoftext|>: the decoder start
            return BatchFeature({"pixel_values": pv, "decoder_input_ids": start})

    return CaptionProcessor(image_processor=image_processor, tokenizer=tokenizer)


def encoder_gflop(model, image_size: int) -> float:
    """GFLOP of one image through the ViT (2 per multiply-add): patch embedding, linears and attention matmuls,
    counted with eager attention on a copy on the meta device (no memory, no compute)."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import ViTModel

    config = copy.deepcopy(model.config.encoder)
    config._attn_implementation = "eager"  # SDPA's CPU kernels are not counted by FlopCounterMode
    with torch.device("meta"):
        vit = ViTModel(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        vit(pixel_values=torch.empty(1, 3, image_size, image_size, device="meta"))
    return counter.get_total_flops() / 1e9


def fixed_length_captioner(model, image_processor, tokenizer, n_tokens: int, fast_path: bool | None = None):
    """vlgen's VitGpt2Captioner generating exactly `n_tokens` (min_new_tokens added: caption_images passes no
    generate kwargs), with its fast path unless `fast_path=False`."""
    from vlgen.captioning.vit_gpt2 import VitGpt2Captioner

    class FixedLengthVitGpt2(VitGpt2Captioner):
        def generate(self, images, num_beams=1, max_new_tokens=30, **kw):
            return super().generate(images, num_beams=num_beams, max_new_tokens=max_new_tokens, min_new_tokens=n_tokens)

    return FixedLengthVitGpt2(model, image_processor, tokenizer, fast_path=fast_path)


def caption_methods(captioner, plain_captioner, pipe, paths, fixed: dict, batch_size: int, *, num_workers=None):
    """The captioning paths, {name: () -> captions}: `vlgen caption`'s (caption_images + the captioner, with and
    without the fast path), transformers' pipeline one image per call, plain `model.generate` in batches of 8."""
    import torch
    from PIL import Image

    model, image_processor, tokenizer = captioner.model, captioner.image_processor, captioner.tokenizer

    def run_vlgen(cap):
        n_beams, n_tokens = fixed["num_beams"], fixed["max_new_tokens"]
        return cb.caption_images_method(cap, paths, batch_size, n_beams, n_tokens, num_workers=num_workers)

    def run_generate() -> list[str]:
        caps = []
        with torch.inference_mode():
            for s in range(0, len(paths), 8):
                ims = [Image.open(p).convert("RGB") for p in paths[s : s + 8]]
                pv = image_processor(images=ims, return_tensors="pt").pixel_values
                ids = model.generate(pixel_values=pv, **fixed)  # (B, 1 + n): <|endoftext|> start, n new tokens
                if ids.shape[1] != 1 + fixed["max_new_tokens"]:
                    raise RuntimeError(f"generate made {ids.shape[1] - 1} tokens, not {fixed['max_new_tokens']}")
                caps += [" ".join(t.split()) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return caps

    return {
        "vlgen_caption": run_vlgen(captioner),
        "vlgen_caption_plain": run_vlgen(plain_captioner),
        "pipeline": cb.pipeline_method(pipe, paths, fixed, text=""),
        "generate_batch8": run_generate,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 32 = vlgen caption's default batch (greedy): fewer images would never fill it. SPEC B1 asks for 8 or more.
    ap.add_argument("--images", type=int, default=32, help="at least 8 (as SPEC B1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--batch-size", type=int, default=None, help="vlgen's batch (default: vlgen caption's)")
    ap.add_argument("--num-beams", type=int, default=1, help="1: B1 (greedy)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-workers", type=int, default=None, help="vlgen's input workers (default: vlgen caption's)")
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    ap.add_argument("--tiny", action="store_true", help="the tiny ViT-GPT2 (32 px): plumbing only")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_caption_vit_gpt2.json")
    args = ap.parse_args(argv)
    if args.images < 8:
        ap.error(f"--images must be at least 8 (as SPEC B1), got {args.images}")

    import torch
    from PIL import Image
    from transformers import pipeline

    from vlgen.captioning.vit_gpt2_fast import fast_generation

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size = args.batch_size or cb.default_batch_size(args.num_beams)
    model, image_processor, tokenizer = build_vit_gpt2(args.seed, tiny=args.tiny)
    image_size = image_processor.size["height"]
    fixed = fixed_kwargs(args.max_new_tokens, args.num_beams)
    gflop = encoder_gflop(model, image_size)

    captioner = fixed_length_captioner(model, image_processor, tokenizer, args.max_new_tokens)
    if not captioner.fast_path:
        raise SystemExit("the ViT-GPT2 fast path is off (VLGEN_VIT_GPT2_FAST_PATH or transformers' internals)")
    plain_captioner = fixed_length_captioner(model, image_processor, tokenizer, args.max_new_tokens, fast_path=False)
    pipe = pipeline("image-text-to-text", model=model, processor=caption_processor(image_processor, tokenizer))
    run_matmul = cb.matmul_meter()

    with tempfile.TemporaryDirectory() as tmp:
        # --tiny: 160x120, under the 6x the 32 px input at which vlgen's decoder reduces images before the
        # processor (vlgen.data.images), so every method sees the same pixels, as 640x480 do at 224 px
        paths = write_images(Path(tmp), args.images, args.seed, (160, 120) if args.tiny else (640, 480))
        pv_all = image_processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt").pixel_values

        def run_encoder() -> None:  # batches of vlgen's batch size
            with torch.inference_mode():
                for s in range(0, len(pv_all), batch_size):
                    model.encoder(pixel_values=pv_all[s : s + batch_size])

        methods = {
            **caption_methods(captioner, plain_captioner, pipe, paths, fixed, batch_size, num_workers=args.num_workers),
            "encoder": run_encoder,
        }
        # warm-up (first-call allocations, lazy imports, kernel selection) of every path, on 2 images
        with torch.inference_mode():
            model.generate(pixel_values=pv_all[:2], **fixed)
            with fast_generation(model):
                model.generate(pixel_values=pv_all[:2], **fixed)
        pipe(str(paths[0]), text="", generate_kwargs=fixed)
        run_matmul()
        # A random published-size GPT-2 writes nearly the same caption for every image (one word repeated), so equal
        # captions alone say little: every step's logits of plain generate and of the fast path are compared too.
        with torch.inference_mode():
            kw = {**fixed, "output_logits": True, "return_dict_in_generate": True}
            ref = model.generate(pixel_values=pv_all[:4], **kw)
            with fast_generation(model):
                got = model.generate(pixel_values=pv_all[:4], **kw)
        logits_check = {
            "generate_sequences_equal": torch.equal(ref.sequences, got.sequences),
            "generate_logits_max_abs_diff": max(
                float((a - b).abs().max()) for a, b in zip(ref.logits, got.logits, strict=True)
            ),
            "generate_logits_max_abs": max(float(a.abs().max()) for a in ref.logits),
        }

        def write_so_far(timings: cb.Timings, repeats_done: int) -> None:
            result = summarise(args, batch_size, gflop, image_size, timings, logits_check)
            write_json({**result, "repeats": repeats_done}, args.out)

        timings = cb.alternate(methods, dict.fromkeys(methods, len(paths)), args.repeats, run_matmul, write_so_far)

    result = summarise(args, batch_size, gflop, image_size, timings, logits_check)
    _print_table(result)
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return result


def summarise(args, batch_size, gflop, image_size, timings: cb.Timings, logits_check: dict) -> dict:
    import torch

    times, captions = timings.times, timings.captions()
    med = cb.medians(times)
    rate = statistics.median(timings.rates)
    floor = gflop / rate
    ref_caps = captions["generate_batch8"]
    return {
        "setting": "B1 method, ViT-GPT2" + (" (TINY model: plumbing only)" if args.tiny else ""),
        "model": "tiny ViT-GPT2 (vlgen.testing.vit_gpt2)" if args.tiny else "vit-gpt2 architecture, random weights",
        "image_size": image_size,
        "input_image": "160x120" if args.tiny else "640x480",
        "images": args.images,
        "num_beams": args.num_beams,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "vlgen_batch_size": batch_size,
        "vlgen_num_workers": "default" if args.num_workers is None else args.num_workers,
        "threads": torch.get_num_threads(),
        "matmul_gflops": rate,
        "encoder_gflop_per_image": gflop,
        "encoder_floor_s_per_image": floor,
        "s_per_image": med,
        "s_per_image_all": times,
        "cpu_s_per_image": cb.cpu_medians(timings.usage),
        "usage_per_image_all": timings.usage,
        "encoder_vs_floor": med["encoder"] / floor,
        "vlgen_speedup_vs_pipeline": med["pipeline"] / med["vlgen_caption"],
        "vlgen_speedup_vs_pipeline_per_repeat": cb.per_repeat_ratio(times, "pipeline", "vlgen_caption"),
        "vlgen_speedup_vs_vlgen_plain_per_repeat": cb.per_repeat_ratio(times, "vlgen_caption_plain", "vlgen_caption"),
        "vlgen_speedup_vs_generate_batch8": med["generate_batch8"] / med["vlgen_caption"],
        "generate_batch8_speedup_vs_pipeline": med["pipeline"] / med["generate_batch8"],
        "captions_identical": {
            k: captions[k] == ref_caps for k in ("vlgen_caption", "vlgen_caption_plain", "pipeline")
        },
        **logits_check,
        "distinct_captions": len(set(ref_caps)),
        "example_caption": ref_caps[0],
        "loadavg_1min": cb.load_summary(timings.load),
        "versions": cb.versions(),
        "machine": cb.machine(),
    }


def _print_table(r: dict) -> None:
    med, floor, cpu = r["s_per_image"], r["encoder_floor_s_per_image"], r["cpu_s_per_image"]
    decoding = "greedy" if r["num_beams"] == 1 else f"{r['num_beams']} beams"
    print(
        f"\n{r['setting']}: {r['images']} images {r['input_image']} -> {r['image_size']}, {decoding}, "
        f"{r['max_new_tokens']} tokens, {r['threads']} threads, median of {r['repeats']}; "
        f"matmul {r['matmul_gflops']:.0f} GFLOP/s; load avg {r['loadavg_1min']['median']:.1f}"
    )
    notes = {
        "vlgen_caption": f"batch {r['vlgen_batch_size']}; {r['vlgen_speedup_vs_pipeline']:.2f}x pipeline images/s",
        "vlgen_caption_plain": "the same, fast_path=False",
        "pipeline": "one image per call",
        "generate_batch8": f"plain model.generate; {r['generate_batch8_speedup_vs_pipeline']:.2f}x pipeline",
        "encoder": f"{r['encoder_vs_floor']:.2f}x floor (the ViT alone; the fast path leaves it as it is)",
    }
    floor_note = f"{r['encoder_gflop_per_image']:.1f} GFLOP / matmul rate"
    cb.print_rows(med, notes, floor, floor_note, cpu=cpu, width=20)
    cb.print_per_repeat("vlgen caption vs pipeline", r["vlgen_speedup_vs_pipeline_per_repeat"])
    cb.print_per_repeat("vlgen caption fast path vs fast_path=False", r["vlgen_speedup_vs_vlgen_plain_per_repeat"])
    print(f"captions identical to plain generate: {r['captions_identical']} ({r['distinct_captions']} distinct); "
          f"fast path vs plain generate on 4 images: sequences equal {r['generate_sequences_equal']}, every "
          f"step's logits within {r['generate_logits_max_abs_diff']:.1e} (values up to "
          f"{r['generate_logits_max_abs']:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
