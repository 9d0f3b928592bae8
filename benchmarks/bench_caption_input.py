"""Issue 19 item 3: the captioning input pipeline alone (the model replaced by a no-op), images/s per worker count.

    .venv/bin/python benchmarks/bench_caption_input.py [--images 256] [--workers 0,1,2] [--formats jpg,png] [--out PATH]

Inputs: random-noise-plus-gradient 640x480 JPEG (quality 90) and PNG files on disk. Each run is `caption_images`
(what `vlgen caption` runs) with a captioner whose `generate` returns empty captions at once, but whose
`input_size` and `image_transform` are BLIP-base's (384 px BlipImageProcessor), so every image is decoded, reduced
and turned into pixel_values exactly as for the real model. --batch-size 32 (the CLI's greedy default).
Rows: images/s per format and `--num-workers`; the first pass of each setting is a warm-up. Prints a table and
writes JSON (load average recorded: on a shared box only ratios within one run mean much).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


class NoOpCaptioner:
    """BLIP-base's input side (384 px processor) and no model: what the input pipeline costs alone."""

    family = "noop"

    def __init__(self) -> None:
        from vlgen.testing.blip import blip_processor

        self.processor = blip_processor(384)

    @property
    def input_size(self) -> tuple[int, int]:
        return (384, 384)

    def image_transform(self):
        from vlgen.captioning.inputs import ProcessorTransform

        return ProcessorTransform(self.processor.image_processor)

    def generate(self, images, num_beams=1, max_new_tokens=30, **kw):
        return [""] * len(images)


def write_images(folder: Path, n: int, fmt: str, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, 640, dtype=np.float32)[None, :, None]
    for i in range(n):
        arr = np.clip(ramp + rng.normal(0, 25, (480, 640, 3)), 0, 255).astype(np.uint8)
        kw = {"quality": 90} if fmt == "jpg" else {}
        Image.fromarray(arr).save(folder / f"img_{i:05d}.{fmt}", **kw)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--workers", default="0,1,2", help="comma-separated --num-workers values")
    ap.add_argument("--formats", default="jpg,png")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_caption_input.json")
    args = ap.parse_args(argv)

    from vlgen.captioning.batch import caption_images, collect_inputs

    workers = [int(w) for w in args.workers.split(",")]
    captioner = NoOpCaptioner()
    rates: dict[str, dict[str, list[float]]] = {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            folder = Path(tmp) / fmt
            folder.mkdir()
            write_images(folder, args.images, fmt)
            items = collect_inputs([folder])
            rates[fmt] = {str(w): [] for w in workers}
            for w in workers:  # warm-up: first imports, page cache
                caption_images(captioner, items[:64], None, batch_size=32, num_workers=w, echo=lambda row: None)
            for r in range(args.repeats):
                for w in workers[r % len(workers) :] + workers[: r % len(workers)]:  # alternate the order
                    t = time.perf_counter()
                    caption_images(captioner, items, None, batch_size=32, num_workers=w, echo=lambda row: None)
                    rates[fmt][str(w)].append(args.images / (time.perf_counter() - t))
                    load.append(os.getloadavg()[0])
    med = {fmt: {w: statistics.median(v) for w, v in by.items()} for fmt, by in rates.items()}
    result = {
        "setting": "640x480 inputs, BLIP-base 384 px preprocessing, no-op model, batch 32",
        "images": args.images,
        "repeats": args.repeats,
        "images_per_s": med,
        "images_per_s_all": rates,
        "loadavg_1min": {"min": min(load), "median": statistics.median(load), "max": max(load)},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "python": platform.python_version(),
    }
    print(f"\ninput pipeline, no-op model: {args.images} images 640x480 -> 384 px, median of {args.repeats}; "
          f"load avg {result['loadavg_1min']['median']:.1f}")  # fmt: skip
    print(f"{'format':<8}" + "".join(f"{'workers ' + str(w):>12}" for w in workers) + "   (images/s)")
    for fmt, by in med.items():
        print(f"{fmt:<8}" + "".join(f"{by[str(w)]:>12.1f}" for w in workers))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
