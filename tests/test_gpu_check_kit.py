"""benchmarks/gpu_check.sh (issue 19 item 6): the dry run on CPU, and the table's goal columns.

The GPU run itself needs a CUDA machine; the dry run goes through the same code (B1 in-process, B2 through
bench_lora_b2.run_one) at tiny sizes. Diffusers' script is used when benchmarks/gpu_check_prepare.sh put it in
benchmarks/gpu_wheels/ (never in CI: it is not committed); without it the diffusers run is skipped and noted.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return gpu_check


def _gpu_like_result(vlgen_step: float, vlgen_vram: float) -> dict:
    run = {"s_per_step": 0.4, "peak_vram_mib": 30000.0, "first_step_end_s": 40.0}
    mine = {**run, "s_per_step": vlgen_step, "peak_vram_mib": vlgen_vram}
    return {
        "dry_run": False,
        "elapsed_s": 200.0,
        "environment": {"gpu": "NVIDIA H200", "cuda": "13.0",
                        "versions": {"torch": "2.11.0", "transformers": "5.24.0", "diffusers": "0.42.1"}},
        "b1": {"dtype": "fp16", "images": 32, "s_per_image": {"vlgen_caption": 0.01, "pipeline": 0.05,
               "generate_batch8": 0.02}, "vlgen_speedup_vs_pipeline": 5.0, "vlgen_speedup_vs_generate_batch8": 2.0,
               "goal_met": True, "captions_identical": {"vlgen_caption": True, "pipeline": True}},
        "b2": {"dtype": "bf16", "resolution": 1024, "timed_steps": "6-30", "runs": {"vlgen": mine, "diffusers": run},
               "speedup_vs_diffusers": 0.4 / vlgen_step, "vram_vs_diffusers": vlgen_vram / 30000.0},
    }  # fmt: skip


def test_table_marks_each_goal():
    gc = _gpu_check()
    lines = gc.table(_gpu_like_result(vlgen_step=0.25, vlgen_vram=27000.0)).splitlines()
    assert lines[0].startswith("GPU check (NVIDIA H200, CUDA 13.0")
    b1 = next(x for x in lines if x.startswith("B1    s/image, fp16"))
    assert "5.00x" in b1 and ">= 3x" in b1 and b1.endswith("yes")
    step = next(x for x in lines if x.startswith("B2    s/step, bf16, 1024 px, steps 6-30"))
    assert "1.60x" in step and ">= 1.3x" in step and step.endswith("yes")
    vram = next(x for x in lines if x.startswith("B2    peak VRAM MiB"))
    assert "27000" in vram and "0.90x" in vram and "<= 0.8x" in vram and vram.endswith("no")  # 0.9 > 0.8


@pytest.mark.slow
def test_dry_run_writes_json_and_prints_table(tmp_path: Path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out), "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["kit"] == "gpu_check" and r["dry_run"] is True and r["complete"] is True
    assert r["goals"] == {"b1_speedup_vs_pipeline": 3.0, "b2_speedup_vs_diffusers": 1.3, "b2_vram_vs_diffusers": 0.8}
    assert r["environment"]["device"] == "cpu" and r["environment"]["versions"]["diffusers"]

    b1 = r["b1"]
    assert b1["dtype"] == "fp32" and b1["images"] == 8 and b1["repeats"] == 1
    med = b1["s_per_image"]
    assert set(med) == {"vlgen_caption", "pipeline", "generate_batch8"} and all(v > 0 for v in med.values())
    assert math.isclose(b1["vlgen_speedup_vs_pipeline"], med["pipeline"] / med["vlgen_caption"])
    assert b1["captions_identical"] == {"vlgen_caption": True, "pipeline": True}  # fp32: exactly plain generate's
    assert b1["goal_met"] == (b1["vlgen_speedup_vs_pipeline"] >= 3.0)

    b2 = r["b2"]
    assert b2["dtype"] == "fp32" and b2["resolution"] == 64 and b2["steps"] == 3 and b2["timed_steps"] == "2-3"
    v = b2["runs"]["vlgen"]
    assert v["s_per_step"] > 0 and v["first_step_end_s"] > 0 and v["peak_rss_mib"] > 0
    assert v["peak_vram_mib"] is None and math.isfinite(v["final_loss"])  # no CUDA in a dry run
    d = b2["runs"].get("diffusers")
    if b2["diffusers_script"] is None:
        assert d is None and "not found" in b2["note"] and b2["speedup_vs_diffusers"] is None
    else:
        assert math.isclose(b2["speedup_vs_diffusers"], d["s_per_step"] / v["s_per_step"])
    assert b2["goal_met"] is None  # no VRAM on CPU: the B2 goal is not judged

    table = proc.stdout
    assert "GPU check (DRY RUN, tiny models, CPU" in table
    assert any(x.startswith("B1    s/image, fp32, 8 images") and ">= 3x" in x for x in table.splitlines())
    assert any(x.startswith("B2    s/step, fp32, 64 px") and ">= 1.3x" in x for x in table.splitlines())
    assert any(x.startswith("B2    peak VRAM MiB") and "<= 0.8x" in x for x in table.splitlines())
    assert f"wrote {out}" in table
