"""What the captioning benchmarks (bench_caption_b1.py, bench_caption_florence.py, bench_caption_vit_gpt2.py) share.

- their inputs: random RGB PNGs on disk, and the generate arguments every method gets (exactly n new tokens);
- two of their methods: `vlgen caption`'s path (caption_images + a captioner) and transformers' pipeline, one image
  per call;
- the alternating timer: methods in a rotating order per repeat, wall time, CPU time and minor faults per image,
  the fp32 rate of a 2048x2048 `torch.mm` and the load average between methods;
- pieces of the JSON (per-repeat ratios, load average, versions, machine) and of the printed table.
Each benchmark keeps its model, its plain-`generate` method (inputs and decoding differ per family), its warm-up,
and its own summary and table around these pieces: their rows, notes and keys differ.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def default_batch_size(num_beams: int = 1) -> int:
    from vlgen.captioning.batch import resolve_batch_size

    return resolve_batch_size(None, num_beams)  # what `vlgen caption` uses without --batch-size


def write_images(folder: Path, n: int, seed: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """`n` random RGB PNGs of `size` (width, height)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def fixed_kwargs(n_tokens: int, num_beams: int = 1) -> dict:
    """generate() arguments every method gets: exactly `n_tokens` new tokens, no sampling."""
    return {"max_new_tokens": n_tokens, "min_new_tokens": n_tokens, "do_sample": False, "num_beams": num_beams}


def caption_images_method(
    captioner, paths: list[Path], batch_size: int, num_beams: int, max_new_tokens: int, num_workers=None
) -> Callable[[], list[str]]:
    """`vlgen caption`'s path: `caption_images` over the files with `captioner`, captions in input order."""
    from vlgen.captioning.batch import caption_images

    items = [(p.name, p) for p in paths]

    def run_vlgen() -> list[str]:
        rows: list[dict] = []
        caption_images(captioner, items, None, batch_size=batch_size, num_beams=num_beams,
                       max_new_tokens=max_new_tokens, echo=rows.append, num_workers=num_workers)  # fmt: skip
        return [r["caption"] for r in rows]

    return run_vlgen


def pipeline_method(pipe, paths: list[Path], fixed: dict, text: str = "", **call_kwargs) -> Callable[[], list[str]]:
    """transformers' pipeline one image (file) per call, whitespace-normalised captions."""

    def run_pipeline() -> list[str]:
        out = [pipe(str(p), text=text, generate_kwargs=fixed, **call_kwargs)[0]["generated_text"] for p in paths]
        return [" ".join(t.split()) for t in out]

    return run_pipeline


def matmul_meter() -> Callable[[], float]:
    """() -> GFLOP/s of a 2048x2048 fp32 `torch.mm`, best of 3: the rate the hardware can reach right now. The
    operands are drawn here, from torch's global RNG, once."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)

    def run_matmul() -> float:
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            torch.mm(a, b)
            ts.append(time.perf_counter() - t)
        return 2 * 2048**3 / min(ts) / 1e9

    return run_matmul


def _usage() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


@dataclass
class Timings:
    """What `alternate` measured. Per method, per repeat: `times` s/image (wall), `usage` this process's CPU seconds
    (user_s, sys_s) and minor faults (minflt) per image; `rates` matmul GFLOP/s at the start of each repeat and after
    every method; `load` the 1-min load average at the start and after every method; `outputs` each method's first
    return value (captions, or whatever else a method returns)."""

    times: dict[str, list[float]]
    usage: dict[str, list[dict]]
    rates: list[float]
    outputs: dict[str, Any]
    load: list[float]

    def captions(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.outputs.items() if isinstance(v, list)}


def alternate(
    methods: Mapping[str, Callable[[], Any]],
    images: Mapping[str, int],
    repeats: int,
    run_matmul: Callable[[], float],
    after_repeat: Callable[[Timings, int], None] | None = None,
) -> Timings:
    """Each repeat runs every method once, the order rotated by one per repeat (no method always runs first or
    after the same neighbour), dividing its time by `images[name]`; a matmul rate and the load average are taken
    between methods, so every time has the machine's state beside it. After each repeat prints the repeat's
    s/image and calls `after_repeat(timings, repeats_done)` (the benchmarks write their JSON there, so a run cut
    short still leaves its medians so far)."""
    t = Timings({k: [] for k in methods}, {k: [] for k in methods}, [], {}, [os.getloadavg()[0]])
    names = list(methods)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        t.rates.append(run_matmul())
        for name in order:
            n = images[name]
            u0, s0, f0 = _usage()
            start = time.perf_counter()
            got = methods[name]()
            t.times[name].append((time.perf_counter() - start) / n)
            u1, s1, f1 = _usage()
            t.usage[name].append({"user_s": (u1 - u0) / n, "sys_s": (s1 - s0) / n, "minflt": (f1 - f0) / n})
            t.outputs.setdefault(name, got)
            t.rates.append(run_matmul())
            t.load.append(os.getloadavg()[0])
        done = ", ".join(f"{k} {v[-1]:.3f}" for k, v in t.times.items())
        print(f"repeat {r + 1}: {done} s/image", flush=True)
        if after_repeat is not None:
            after_repeat(t, r + 1)
    return t


def medians(times: Mapping[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def cpu_medians(usage: Mapping[str, list[dict]]) -> dict[str, float]:
    """Median CPU seconds (user + system) per image of each method."""
    return {k: statistics.median(u["user_s"] + u["sys_s"] for u in v) for k, v in usage.items()}


def per_repeat_ratio(times: Mapping[str, list[float]], slower: str, faster: str) -> list[float]:
    """times[slower] / times[faster] within each repeat (both measured minutes apart at most, under the same load)."""
    return [p / v for p, v in zip(times[slower], times[faster], strict=True)]


def load_summary(load: list[float]) -> dict:
    return {"min": min(load), "median": statistics.median(load), "max": max(load)}


def versions() -> dict:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform()}


def write_json(result: dict, out: Path) -> None:
    """Atomically (temp file + rename): a run cut short leaves the last complete JSON, never half of one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    tmp_out.replace(out)


def print_rows(
    med: Mapping[str, float],
    notes: Mapping[str, str],
    floor: float,
    floor_note: str,
    cpu: Mapping[str, float] | None = None,
    width: int = 18,
) -> None:
    """The table's header, one row per method (s/image, images/s, CPU s/image if `cpu` is given, note) and the
    encoder floor's row."""
    cpu_head, cpu_blank = (f"{'cpu s/img':>11}", f"{'':>11}") if cpu is not None else ("", "")
    print(f"{'method':<{width}}{'s/image':>9}{'images/s':>10}{cpu_head}  note")
    for k, v in med.items():
        cpu_col = f"{cpu[k]:>11.3f}" if cpu is not None else ""
        print(f"{k:<{width}}{v:>9.3f}{1 / v:>10.3f}{cpu_col}  {notes[k]}")
    print(f"{'encoder floor':<{width}}{floor:>9.3f}{1 / floor:>10.3f}{cpu_blank}  {floor_note}")


def print_per_repeat(label: str, ratios: list[float]) -> None:
    print(f"{label}, per repeat: " + ", ".join(f"{x:.2f}" for x in ratios))
