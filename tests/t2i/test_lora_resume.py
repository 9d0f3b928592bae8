"""A LoRA run killed with SIGKILL and resumed from its last checkpoint ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from vlgen.checkpointing import list_checkpoints
from vlgen.cli import main
from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME


def _run(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "VLGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vlgen", *args], env=env, stderr=subprocess.PIPE, text=True)


def test_resume_after_sigkill_is_bit_identical(
    icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, capsys, sigkill_at_first_checkpoint
):
    common = ["train", "lora", "--base", str(tiny_sdxl_dir), "--vae", str(tiny_sdxl_vae_dir), "--data", str(icons)]
    common += ["--instance-prompt", "a 3D icon in the style of TOK", "--caption-column", "text", "--resolution", "64"]
    common += ["--train-batch-size", "1", "--gradient-accumulation-steps", "2", "--max-train-steps", "40"]
    common += ["--learning-rate", "1e-2", "--lr-scheduler", "cosine", "--snr-gamma", "5", "--random-flip"]
    common += ["--noise-offset", "0.05", "--checkpointing-steps", "3", "--checkpoints-total-limit", "2"]
    common += ["--num-validation-images", "0", "--seed", "3"]

    # Only the run that gets killed needs its own process; the reference and the resumed run go in-process.
    out = tmp_path / "killed"
    proc = _run([*common, "--out", str(out)])
    killed_at = sigkill_at_first_checkpoint(proc, out / "checkpoints", out / DIFFUSERS_WEIGHT_NAME)

    assert main([*common, "--out", str(tmp_path / "ref")]) == 0
    capsys.readouterr()
    assert main([*common, "--out", str(out), "--resume-from-checkpoint", "latest"]) == 0
    assert f"resumed from {killed_at}" in " ".join(capsys.readouterr().err.split())

    a = load_file(str(tmp_path / "ref" / DIFFUSERS_WEIGHT_NAME))
    b = load_file(str(out / DIFFUSERS_WEIGHT_NAME))
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ref" / "history.csv").read_text() == (out / "history.csv").read_text()
    assert len(list_checkpoints(out / "checkpoints")) == 2  # --checkpoints-total-limit


def test_flux_resume_after_sigkill_is_bit_identical(
    icons, tiny_flux_dir, tmp_path, capsys, sigkill_at_first_checkpoint
):
    """The flow-matching family resumes exactly too: its timestep density (logit_normal) and noise are drawn from
    the per-step generator, and the text-encoder LoRA (CLIP) and caption dropout are in the checkpointed state."""
    common = ["train", "lora", "--base", str(tiny_flux_dir), "--data", str(icons), "--caption-column", "text"]
    common += ["--instance-prompt", "a 3D icon in the style of TOK", "--resolution", "64", "--train-batch-size", "1"]
    common += ["--gradient-accumulation-steps", "2", "--max-train-steps", "30", "--learning-rate", "1e-2"]
    common += ["--weighting-scheme", "logit_normal", "--max-sequence-length", "16", "--train-text-encoder"]
    common += ["--caption-dropout-rate", "0.3", "--random-flip", "--checkpointing-steps", "3"]
    common += ["--num-validation-images", "0", "--seed", "5"]

    out = tmp_path / "killed"
    proc = _run([*common, "--out", str(out)])
    killed_at = sigkill_at_first_checkpoint(proc, out / "checkpoints", out / DIFFUSERS_WEIGHT_NAME)
    assert main([*common, "--out", str(tmp_path / "ref")]) == 0
    capsys.readouterr()
    assert main([*common, "--out", str(out), "--resume-from-checkpoint", "latest"]) == 0
    assert f"resumed from {killed_at}" in " ".join(capsys.readouterr().err.split())
    a = load_file(str(tmp_path / "ref" / DIFFUSERS_WEIGHT_NAME))
    b = load_file(str(out / DIFFUSERS_WEIGHT_NAME))
    assert {k.split(".")[0] for k in a} == {"transformer", "text_encoder"} and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ref" / "history.csv").read_text() == (out / "history.csv").read_text()
