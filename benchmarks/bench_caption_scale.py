"""Issue 19 item 4: `vlgen caption` at scale - peak RSS and per-image time over N synthetic samples, and resume.

    .venv/bin/python benchmarks/bench_caption_scale.py [--sizes 10000,100000] [--formats folder,shards]
        [--workers N] [--batch-size 32] [--max-new-tokens 8] [--resume-lines 1000000] [--work DIR] [--out PATH]

Model: tiny BLIP (`vlgen tiny blip`, random weights seed 0, 32 px input), greedy, `--max-new-tokens` (min as
well is not set: a random model stops where it stops, the same per image in every run). Inputs: N samples
made of `--distinct` (256) seeded 48x48 JPEGs (noise on a gradient) encoded once and reused under unique keys,
laid out as (a) an image folder (`DIR/00012/0012345.jpg`, 1000 files per subfolder) and (b) WebDataset tar
shards of 1000 samples (`{key}.jpg` + `{key}.txt`). Each `vlgen caption` run is its own process
(`python -m vlgen caption INPUT --out OUT.jsonl ...`) started from this light parent (no torch here: a child's
ru_maxrss starts at its parent's high-water mark); per run:

- peak RSS: `ru_maxrss` from `os.wait4` (the child and its input workers: the largest one, not the sum);
- steady s/image: from the first row in the output to the last (this parent polls the file's new lines), so
  start-up (imports, model load, listing the inputs) is not spread over the images; and the CPU seconds the
  run's processes used over the same span (/proc), per image: what a shared machine's load moves least;
- start-up: process start to the first row (listing N inputs is in it, so it may grow with N);
- end-to-end s/image: the whole run / N.

Goals (issue 19 item 4): peak RSS at the largest size <= 1.2x the smallest, steady s/image within 1.2x.

Resume: a `--resume-lines` (1M) line output (`{"file_name", "caption"}` rows whose first keys are the smallest
shard input's) is read back by (a) `vlgen.captioning.batch.done_file_names` alone, timed in a child process,
and (b) `vlgen caption` on the smallest shard input with that file as --out: every sample is already there, so
the run only resumes and exits; against (c) the same run with an --out holding just that input's rows (b and
c twice each, alternating). The resume cost is (b) - (c); goal: seconds. Resume runs first, then the sizes in
ascending order; the JSON is rewritten after each step ("complete": false until the end). Children run with
OMP_NUM_THREADS=--threads (1): with torch's default of one thread per core the tiny model's small ops spend most
of their time spin-waiting on a shared 2-core box (13-27 vs 3 ms/image measured here).

Temp data lives in a folder under --work (default: the system temp dir) and is removed at the end (--keep
keeps it). Prints a table and writes JSON (settings, versions, load average, per-run numbers).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_DIR = 1000  # files per subfolder, samples per shard
GOAL_RATIO = 1.2


# ---------------------------------------------------------------------------------------------- inputs


def encoded_images(n: int, size: int = 48, seed: int = 0) -> list[bytes]:
    """`n` distinct seeded JPEGs of size x size (noise on a gradient), encoded once."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, size, dtype=np.float32)[None, :, None]
    out = []
    for _ in range(n):
        arr = np.clip(ramp + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def key(i: int) -> str:
    return f"{i:07d}"


def write_folder(root: Path, n: int, images: list[bytes]) -> Path:
    """An image folder of n files, 1000 per subfolder: `root/00012/0012345.jpg`."""
    for i in range(n):
        sub = root / f"{i // PER_DIR:05d}"
        if i % PER_DIR == 0:
            sub.mkdir(parents=True)
        (sub / f"{key(i)}.jpg").write_bytes(images[i % len(images)])
    return root


def write_shards(root: Path, n: int, images: list[bytes]) -> Path:
    """WebDataset shards of 1000 samples each: `root/00012.tar` holding `{key}.jpg` and `{key}.txt`."""
    root.mkdir(parents=True)
    for s in range(0, n, PER_DIR):
        with tarfile.open(root / f"{s // PER_DIR:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
            for i in range(s, min(n, s + PER_DIR)):
                for ext, data in (("jpg", images[i % len(images)]), ("txt", f"synthetic sample {i}".encode())):
                    info = tarfile.TarInfo(f"{key(i)}.{ext}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    tf.addfile(info, io.BytesIO(data))
    return root


def write_caption_file(path: Path, n: int, done_keys: int = 0) -> int:
    """A `vlgen caption` output of n rows; returns its size in bytes. Keys are `key(i)` (the first
    `done_keys` match a shard input's samples)."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = {"file_name": key(i), "caption": f"a synthetic photo of sample {i} on a grey gradient"}
            f.write(json.dumps(row) + "\n")
    return path.stat().st_size


# ---------------------------------------------------------------------------------------------- runs


THREADS = [1]  # torch/OpenMP threads per child (--threads)


def child_env() -> dict:
    env = dict(os.environ)
    if THREADS[0]:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(THREADS[0])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) so far of `pid` and its descendants (its input workers), from /proc; 0 when
    it is gone. Taken at the first and the last new row, so the steady phase's CPU time, robust to how much
    of the shared CPUs this run got."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for tid in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
                total += tree_cpu_s(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


def run_child(cmd: list[str], log: Path, watch: Path | None = None) -> dict:
    """Run `cmd` as its own process; wall time, peak RSS (os.wait4), and when `watch` is a file the child
    appends rows to: the times its first and last new rows appeared (polled every 0.05 s)."""
    first = last = cpu_first = cpu_last = None
    rows = 0
    start_size = watch.stat().st_size if watch is not None and watch.exists() else 0
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=err)
        f = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if watch is not None:
                if f is None and watch.exists():
                    f = open(watch, "rb")  # noqa: SIM115 - closed below
                    f.seek(start_size)
                if f is not None:
                    new = f.read().count(b"\n")
                    if new:
                        now, cpu = time.perf_counter() - t0, tree_cpu_s(proc.pid)
                        first = now if first is None else first
                        cpu_first = cpu if cpu_first is None else cpu_first
                        last, cpu_last, rows = now, cpu, rows + new
            if pid:
                break
            time.sleep(0.05)
        if f is not None:
            f.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({' '.join(cmd)[:300]}):\n{log.read_text()[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "first_row_s": first, "last_row_s": last,
            "cpu_first_row_s": cpu_first, "cpu_last_row_s": cpu_last,
            "rows_seen": rows, "user_s": usage.ru_utime, "sys_s": usage.ru_stime}  # fmt: skip


def caption_cmd(args, model: Path, inp: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vlgen", "caption", str(inp), "--model", str(model), "--out", str(out),
           "--num-beams", "1", "--max-new-tokens", str(args.max_new_tokens), "--device", "cpu"]  # fmt: skip
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.workers is not None:
        cmd += ["--num-workers", str(args.workers)]
    return cmd


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def caption_run(args, model: Path, fmt: str, n: int, inp: Path, work: Path) -> dict:
    out = work / f"out_{fmt}_{n}.jsonl"
    out.unlink(missing_ok=True)
    r = run_child(caption_cmd(args, model, inp, out), work / f"log_{fmt}_{n}.txt", watch=out)
    rows = count_lines(out)
    if rows != n:
        sys.exit(f"{fmt} {n}: {rows} rows written, expected {n} (see {work / f'log_{fmt}_{n}.txt'})")
    steady = (r["last_row_s"] - r["first_row_s"]) / max(1, n - 1) if r["first_row_s"] is not None else None
    cpu = (r["cpu_last_row_s"] - r["cpu_first_row_s"]) / max(1, n - 1) if r["first_row_s"] is not None else None
    out.unlink()
    return {
        "format": fmt,
        "n": n,
        "rows": rows,
        **r,
        "s_per_image_steady": steady,
        "cpu_s_per_image_steady": cpu,
        "s_per_image_e2e": r["wall_s"] / n,
        "load_avg_1min": os.getloadavg()[0],
    }


DONE_TIMER = """
import json, sys, time
t = time.perf_counter()
from vlgen.captioning.batch import done_file_names
t_import = time.perf_counter() - t
t = time.perf_counter()
done = done_file_names(__import__("pathlib").Path(sys.argv[1]))
print(json.dumps({"done_file_names_s": time.perf_counter() - t, "names": len(done), "import_s": t_import}))
"""


def resume_runs(args, model: Path, shards: Path, n: int, work: Path) -> dict:
    """(a) done_file_names on the big file alone, (b) `vlgen caption` resuming from it, (c) the same run with
    an output of just the input's rows."""
    big = work / "resume_big.jsonl"
    t = time.perf_counter()
    size = write_caption_file(big, args.resume_lines)
    write_s = time.perf_counter() - t
    small = work / "resume_small.jsonl"
    write_caption_file(small, n)
    log = work / "log_resume.txt"
    timer_out = work / "done_timer.json"
    with open(timer_out, "w") as f, open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", DONE_TIMER, str(big)], env=child_env(), stdout=f, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"done_file_names timer failed:\n{log.read_text()[-3000:]}")
    timer = json.loads(timer_out.read_text())
    if timer["names"] != args.resume_lines:
        sys.exit(f"done_file_names found {timer['names']} names, expected {args.resume_lines}")
    timer["peak_rss_mib"] = usage.ru_maxrss / 1024
    cli = {}
    for which, path in (("small", small), ("big", big), ("small_again", small), ("big_again", big)):
        before = path.stat().st_size
        r = run_child(caption_cmd(args, model, shards, path), work / f"log_resume_{which}.txt")
        if path.stat().st_size != before:
            sys.exit(f"resume run ({which}) changed its output: something was captioned again")
        if "captioned 0 images" not in (work / f"log_resume_{which}.txt").read_text():
            sys.exit(f"resume run ({which}) did not report the samples as already done")
        cli[which] = r

    def cpu(which: str) -> float:
        return cli[which]["user_s"] + cli[which]["sys_s"]

    # CPU seconds: what the load of a shared machine moves least (wall time stretches with others' work)
    cost_cpu = statistics.fmean([cpu("big"), cpu("big_again")]) - statistics.fmean([cpu("small"), cpu("small_again")])
    big_s = statistics.fmean([cli["big"]["wall_s"], cli["big_again"]["wall_s"]])
    small_s = statistics.fmean([cli["small"]["wall_s"], cli["small_again"]["wall_s"]])
    big.unlink()
    small.unlink()
    return {"lines": args.resume_lines, "file_mib": size / 2**20, "write_s": write_s, "input": f"shards, {n} samples",
            "done_file_names": timer, "cli": cli, "cli_big_s": big_s, "cli_small_s": small_s,
            "resume_cost_s": big_s - small_s, "resume_cost_cpu_s": cost_cpu,
            "cli_peak_rss_extra_mib": statistics.fmean([cli["big"]["peak_rss_mib"], cli["big_again"]["peak_rss_mib"]])
            - statistics.fmean([cli["small"]["peak_rss_mib"], cli["small_again"]["peak_rss_mib"]])}  # fmt: skip


# ---------------------------------------------------------------------------------------------- report


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("vlgen", "torch", "transformers", "pillow", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def ratios(runs: list[dict], sizes: list[int], formats: list[str]) -> dict:
    lo, hi = sizes[0], sizes[-1]
    out = {}
    for fmt in formats:
        a = next((r for r in runs if (r["format"], r["n"]) == (fmt, lo)), None)
        b = next((r for r in runs if (r["format"], r["n"]) == (fmt, hi)), None)
        if a is None or b is None:
            continue
        rss = b["peak_rss_mib"] / a["peak_rss_mib"]
        steady = b["s_per_image_steady"] / a["s_per_image_steady"]
        out[fmt] = {"sizes": [lo, hi], "peak_rss": rss, "peak_rss_met": rss <= GOAL_RATIO,
                    "s_per_image_steady": steady, "s_per_image_steady_met": steady <= GOAL_RATIO,
                    "cpu_s_per_image_steady": b["cpu_s_per_image_steady"] / a["cpu_s_per_image_steady"],
                    "s_per_image_e2e": b["s_per_image_e2e"] / a["s_per_image_e2e"],
                    "first_row_s": b["first_row_s"] / a["first_row_s"]}  # fmt: skip
    return out


def print_table(result: dict) -> None:
    s = result["settings"]
    print(f"\nvlgen caption at scale: tiny BLIP, greedy, {s['max_new_tokens']} new tokens, batch "
          f"{s['batch_size'] or 'default'}, {s['threads'] or 'default'} thread(s), "
          f"workers {s['workers'] if s['workers'] is not None else 'default'}; "
          f"load avg {result['loadavg_1min']['median']:.1f}")  # fmt: skip
    print(f"{'format':<8}{'N':>8}{'peak RSS MiB':>14}{'ms/image':>10}{'CPU ms/img':>12}{'e2e ms/img':>12}"
          f"{'start-up s':>12}{'wall s':>9}")  # fmt: skip
    for r in result["runs"]:
        print(f"{r['format']:<8}{r['n']:>8}{r['peak_rss_mib']:>14.0f}{1000 * r['s_per_image_steady']:>10.2f}"
              f"{1000 * r['cpu_s_per_image_steady']:>12.2f}{1000 * r['s_per_image_e2e']:>12.2f}"
              f"{r['first_row_s']:>12.1f}{r['wall_s']:>9.1f}")  # fmt: skip
    for fmt, q in result["ratios"].items():
        lo, hi = q["sizes"]
        print(f"{fmt}: {hi}/{lo}: peak RSS {q['peak_rss']:.3f}x ({'met' if q['peak_rss_met'] else 'NOT met'}), "
              f"steady s/image {q['s_per_image_steady']:.3f}x ({'met' if q['s_per_image_steady_met'] else 'NOT met'})"
              f" [goal <= {GOAL_RATIO}x]; CPU s/image {q['cpu_s_per_image_steady']:.3f}x; "
              f"start-up {q['first_row_s']:.2f}x")  # fmt: skip
    r = result.get("resume")
    if r:
        d = r["done_file_names"]
        print(f"resume, {r['lines']:,} lines ({r['file_mib']:.0f} MiB): done_file_names {d['done_file_names_s']:.2f} s "
              f"(peak RSS {d['peak_rss_mib']:.0f} MiB); vlgen caption end to end {r['cli_big_s']:.1f} s vs "
              f"{r['cli_small_s']:.1f} s with a {r['input']} output -> resume cost {r['resume_cost_s']:.1f} s "
              f"({r['resume_cost_cpu_s']:.1f} CPU s), "
              f"+{r['cli_peak_rss_extra_mib']:.0f} MiB peak RSS")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated sample counts, ascending")
    ap.add_argument("--formats", default="folder,shards", help="folder, shards or both")
    ap.add_argument("--workers", type=int, default=None, help="vlgen caption --num-workers (default: its own)")
    ap.add_argument("--batch-size", type=int, default=None, help="vlgen caption --batch-size (default: its own)")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (0: torch's default)")
    ap.add_argument("--distinct", type=int, default=256, help="distinct encoded images reused under unique keys")
    ap.add_argument("--resume-lines", type=int, default=1_000_000, help="0: no resume runs")
    ap.add_argument("--work", type=Path, default=None, help="folder for the temp data (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_caption_scale.json")
    args = ap.parse_args(argv)
    THREADS[0] = args.threads
    sizes = sorted(int(x) for x in args.sizes.split(","))
    formats = [f for f in args.formats.split(",") if f]
    if not set(formats) <= {"folder", "shards"} or len(sizes) < 2:
        ap.error("--formats takes folder and/or shards; --sizes needs at least two sizes")
    if args.resume_lines and args.resume_lines < sizes[0]:
        ap.error("--resume-lines must hold the smallest input's rows")

    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_caption_scale.", dir=args.work))
    t_start = time.perf_counter()
    load = [os.getloadavg()[0]]
    runs: list[dict] = []
    build_s: dict[str, float] = {}
    resume = None

    def save(complete: bool) -> dict:
        result = {
            "setting": "vlgen caption, tiny BLIP (32 px, random weights seed 0), greedy, synthetic 48x48 JPEG samples",
            "settings": {
                "sizes": sizes,
                "formats": formats,
                "workers": args.workers,
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "threads": args.threads,
                "distinct_images": args.distinct,
                "samples_per_shard_or_subfolder": PER_DIR,
                "resume_lines": args.resume_lines,
            },
            "goal": f"largest/smallest size: peak RSS <= {GOAL_RATIO}x, steady s/image <= {GOAL_RATIO}x; "
            "resume in seconds",
            "runs": runs,
            "ratios": ratios(runs, sizes, formats),
            "resume": resume,
            "input_build_s": build_s,
            "parent_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "elapsed_s": time.perf_counter() - t_start,
            "loadavg_1min": {"min": min(load), "median": statistics.median(load), "max": max(load)},
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        result["complete"] = complete
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        return result

    try:
        model = work / "tiny-blip"
        subprocess.run([sys.executable, "-m", "vlgen", "tiny", "blip", str(model)], env=child_env(), check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        images = encoded_images(args.distinct)
        inputs: dict[tuple[str, int], Path] = {}
        for n in sizes:
            for fmt in formats:
                t = time.perf_counter()
                writer = write_folder if fmt == "folder" else write_shards
                inputs[fmt, n] = writer(work / f"{fmt}_{n}", n, images)
                build_s[f"{fmt}_{n}"] = time.perf_counter() - t
                print(f"wrote {fmt} of {n} samples in {build_s[f'{fmt}_{n}']:.1f} s", flush=True)
        if args.resume_lines:
            shards = inputs.get(("shards", sizes[0])) or write_shards(work / "resume_shards", sizes[0], images)
            resume = resume_runs(args, model, shards, sizes[0], work)
            load.append(os.getloadavg()[0])
            save(complete=False)
            print(f"resume: {resume['resume_cost_s']:.1f} s over {args.resume_lines} lines", flush=True)
        for n in sizes:  # ascending; the formats alternate within a size
            for fmt in formats:
                r = caption_run(args, model, fmt, n, inputs[fmt, n], work)
                runs.append(r)
                load.append(os.getloadavg()[0])
                save(complete=False)
                print(f"{fmt} {n}: {r['wall_s']:.1f} s, {1000 * r['s_per_image_steady']:.2f} ms/image steady, "
                      f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = save(complete=True)
    print_table(result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
