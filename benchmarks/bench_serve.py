"""Load-test `vlgen serve` captioning: micro-batching on vs off, same model, same load, one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_serve.py [--model DIR|blip] [--requests 200]
        [--concurrency 16] [--max-batch-size 8] [--max-wait-ms 10] [--num-threads 1] [--num-beams 1]
        [--max-new-tokens 8] [--out PATH]

By default the captioner is the *tiny* random BLIP of `vlgen.testing` (real BlipForConditionalGeneration
classes at toy width, 384 px input), built into a temp dir, so the run needs no download; its absolute
numbers are about the serving path (HTTP, multipart, decoding, batching), not about real BLIP speed. Pass
`--model blip` (or a directory) where the real checkpoint is cached.

For each configuration a real server process is started (`python -m vlgen serve`), warmed up, then hit
with `--requests` single-image caption requests from `--concurrency` client threads (httpx). Reported:
requests/s, p50/p99 latency, mean batch size (from /health) and the server's peak RSS (VmHWM). Prints a
table and writes JSON. The server runs with `--num-threads 1` by default: on a small shared CPU, torch's
default of one OpenMP thread per core made every forward pass ~15x slower through spin-waiting.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _images(n: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def run_config(model: str, max_batch_size: int, args, images: list[bytes]) -> dict:
    import httpx

    from vlgen.serving.process import ServerProcess

    server_args = [
        "--caption-model", model,
        "--max-batch-size", str(max_batch_size),
        "--max-wait-ms", str(args.max_wait_ms),
        "--max-queue", str(max(64, args.concurrency * 2)),
        "--num-threads", str(args.num_threads),
        "--log-level", "warning",
    ]  # fmt: skip
    data = {"num_beams": str(args.num_beams), "max_new_tokens": str(args.max_new_tokens)}
    with ServerProcess(server_args) as server, httpx.Client(base_url=server.url, timeout=300) as client:

        def one(i: int) -> float:
            t0 = time.perf_counter()
            r = client.post(
                "/v1/caption", files={"file": (f"{i}.jpg", images[i % len(images)], "image/jpeg")}, data=data
            )
            r.raise_for_status()
            return time.perf_counter() - t0

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(args.concurrency * 2)))  # warm-up
            before = client.get("/health").json()["caption"]
            t0 = time.perf_counter()
            latencies = list(pool.map(one, range(args.requests)))
            wall = time.perf_counter() - t0
        after = client.get("/health").json()["caption"]
        peak_rss_mb = server.peak_rss_kb() / 1024
    batches = after["batches"] - before["batches"]
    return {
        "max_batch_size": max_batch_size,
        "requests": args.requests,
        "requests_per_s": args.requests / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * _percentile(latencies, 99),
        "mean_batch_size": (after["images"] - before["images"]) / max(1, batches),
        "peak_rss_mb": peak_rss_mb,
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="caption model (default: a freshly built tiny BLIP)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--num-threads", type=int, default=1, help="server's torch threads (1: robust on shared CPUs)")
    ap.add_argument("--num-beams", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_serve.json")
    args = ap.parse_args()

    from vlgen.fileio import write_json

    model = args.model
    if model is None:
        from vlgen.testing import build_tiny

        model = str(build_tiny("blip", Path(tempfile.mkdtemp(prefix="bench-serve-")) / "blip", seed=0))
        model_note = "tiny random BLIP (vlgen.testing, seed 0)"
    else:
        model_note = model
    images = _images(16)
    rows = [run_config(model, bs, args, images) for bs in (args.max_batch_size, 1)]

    header = f"{'config':<22}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'mean batch':>12}{'peak RSS MB':>13}"
    print(f"\nvlgen serve, {model_note}: {args.requests} requests, concurrency {args.concurrency}, "
          f"num_beams {args.num_beams}, max_new_tokens {args.max_new_tokens}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for row in rows:
        name = f"batched (max {row['max_batch_size']})" if row["max_batch_size"] > 1 else "no batching (max 1)"
        print(
            f"{name:<22}{row['requests_per_s']:>8.1f}{row['p50_ms']:>9.0f}{row['p99_ms']:>9.0f}"
            f"{row['mean_batch_size']:>12.2f}{row['peak_rss_mb']:>13.0f}"
        )
    speedup = rows[0]["requests_per_s"] / rows[1]["requests_per_s"]
    print(f"throughput, batched / unbatched: {speedup:.2f}x")
    result = {
        "benchmark": "bench_serve",
        "model": model_note,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "model")},
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "results": rows,
        "speedup_batched_vs_unbatched": speedup,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
