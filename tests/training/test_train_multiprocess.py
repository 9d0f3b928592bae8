"""`vlgen train caption` and `vlgen train lora` on two processes: `torchrun --nproc_per_node 2` on CPU (gloo).

Real launches, as a user starts them: the processes split each global batch (train_summary.json records
num_processes, and the step count is that of a global batch twice the per-process one), finish - an early
stop included, which every process must agree on or the others wait for ever in the next all-reduce - and a
2-process run killed with SIGKILL and resumed ends bit-identical to an uninterrupted 2-process run (each
process resumes its own RNG streams: the checkpoint holds rank 1's too).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlgen.checkpointing import list_checkpoints
from vlgen.data.records import load_records
from vlgen.data.synth import synth_dataset

TORCHRUN = Path(sys.executable).parent / "torchrun"
TINY_CNN_LSTM = [
    "--encoder", "tiny", "--encoder-weights", "none", "--no-freeze-encoder", "--attention",
    "--image-size", "32", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    synth_dataset(out, n=24, seed=0, image_size=32, progress=False)
    return out


@pytest.fixture(scope="module")
def icons(tmp_path_factory):
    out = tmp_path_factory.mktemp("icons") / "data"
    synth_dataset(out, n=6, seed=0, style="glossy", image_size=64, progress=False)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list, nproc: int = 2) -> subprocess.Popen:
    """`torchrun --nproc_per_node N -m vlgen ARGS` on CPU, in a session of its own (killed as a group)."""
    cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master-addr", "127.0.0.1"]
    cmd += ["--master-port", str(_free_port()), "-m", "vlgen", *map(str, args)]
    env = {**os.environ, "VLGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    pipe = subprocess.PIPE
    return subprocess.Popen(cmd, env=env, stdout=pipe, stderr=pipe, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    """Wait for a launch to end (killing the whole group if it hangs); returns its stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the 2-process run hung (killed after {timeout} s): {err[-2000:]}")
    assert proc.returncode == 0, err[-3000:]
    return err


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own: killing torchrun's
    process group leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _kill_at_first_checkpoint(proc: subprocess.Popen, checkpoints: Path, timeout: float = 240) -> Path:
    """SIGKILL both workers and torchrun as soon as the first checkpoint is on disk (a crash of the machine)."""
    deadline = time.time() + timeout
    while not list_checkpoints(checkpoints) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return list_checkpoints(checkpoints)[-1]


def _caption_args(synth: Path, out: Path, *extra) -> list:
    return ["train", "caption", "--data", synth, "--out", out, *TINY_CNN_LSTM, "--train-batch-size", "2", *extra]


def test_two_processes_split_the_batches_and_stop_early_together(synth, tmp_path):
    """Fast tier (~15 s). A learning rate that makes the validation loss worse after the first epoch: rank 0
    decides to stop at the end of epoch 2, rank 1 must stop there too (else the launch hangs)."""
    out = tmp_path / "run"
    args = [*_caption_args(synth, out), "--epochs", "5", "--learning-rate", "1", "--seed", "0"]
    args += ["--metric-for-best-model", "loss", "--early-stopping-patience", "1", "--checkpointing-steps", "4"]
    err = _finish(_torchrun(args))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2
    assert "early stopping" in err and summary["epochs"] < 5
    # 2 samples per process -> global batches of 4 (one process alone would take batches of 2).
    n_train = sum(len(r.captions) for r in load_records(synth, split="train"))
    assert summary["steps"] == summary["epochs"] * math.ceil(n_train / 4)
    ckpt = list_checkpoints(out / "checkpoints")[-1]
    assert (ckpt / "rng_rank1.json").is_file() and (ckpt / "rng_rank1.safetensors").is_file()
    rows = sum(1 for _ in (out / "history.csv").open())
    assert rows == 1 + summary["steps"] + summary["epochs"]  # header, steps, validations


@pytest.mark.slow
def test_two_process_caption_resume_after_sigkill_is_bit_identical(synth, tmp_path):
    common = ["--epochs", "4", "--learning-rate", "5e-3", "--seed", "3", "--dropout", "0.3"]
    common += ["--gradient-accumulation-steps", "2", "--checkpointing-steps", "3", "--checkpoints-total-limit", "2"]
    common += ["--metric-for-best-model", "loss", "--num-workers", "1"]
    ref = tmp_path / "ref"
    _finish(_torchrun(_caption_args(synth, ref, *common)))

    out = tmp_path / "killed"
    killed_at = _kill_at_first_checkpoint(_torchrun(_caption_args(synth, out, *common)), out / "checkpoints")
    err = _finish(_torchrun(_caption_args(synth, out, *common, "--resume-from-checkpoint", "latest")))
    assert f"resumed from {killed_at}" in " ".join(err.split())

    assert json.loads((out / "train_summary.json").read_text())["num_processes"] == 2
    for name in ("last", "best"):
        a, b = load_file(str(ref / name / "model.safetensors")), load_file(str(out / name / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert (ref / "history.csv").read_text() == (out / "history.csv").read_text()


@pytest.mark.slow
def test_two_process_lora_finishes_and_resumes_bit_identical(icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path):
    from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME

    common = ["train", "lora", "--base", tiny_sdxl_dir, "--vae", tiny_sdxl_vae_dir, "--data", icons]
    common += ["--instance-prompt", "a 3D icon in the style of TOK", "--caption-column", "text", "--resolution", "64"]
    common += ["--train-batch-size", "1", "--gradient-accumulation-steps", "2", "--max-train-steps", "12"]
    common += ["--learning-rate", "1e-2", "--lr-scheduler", "cosine", "--random-flip", "--noise-offset", "0.05"]
    common += ["--checkpointing-steps", "2", "--checkpoints-total-limit", "2", "--num-validation-images", "0"]
    common += ["--seed", "3"]
    ref = tmp_path / "ref"
    _finish(_torchrun([*common, "--out", ref]))
    summary = json.loads((ref / "train_summary.json").read_text())
    # 6 images, 1 per process -> 3 global batches an epoch, 2 steps an epoch with accumulation over 2.
    assert summary["num_processes"] == 2 and summary["steps"] == 12

    out = tmp_path / "killed"
    killed_at = _kill_at_first_checkpoint(_torchrun([*common, "--out", out]), out / "checkpoints")
    err = _finish(_torchrun([*common, "--out", out, "--resume-from-checkpoint", "latest"]))
    assert f"resumed from {killed_at}" in " ".join(err.split())
    a, b = load_file(str(ref / DIFFUSERS_WEIGHT_NAME)), load_file(str(out / DIFFUSERS_WEIGHT_NAME))
    assert a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)
    assert (ref / "history.csv").read_text() == (out / "history.csv").read_text()


@pytest.mark.slow
def test_two_process_vit_gpt2_trains_through_ddp(synth, tiny_vit_gpt2_dir, tmp_path):
    """A Hugging Face captioner under DDP: its forward goes through the wrapper (gradients averaged), and
    parameters a forward leaves unused (the ViT pooler) do not stop the gradient reduction."""
    out = tmp_path / "run"
    args = ["train", "caption", "--data", synth, "--out", out, "--model", tiny_vit_gpt2_dir, "--epochs", "1"]
    args += ["--max-length", "24", "--max-new-tokens", "8", "--train-batch-size", "2"]
    args += ["--gradient-accumulation-steps", "2", "--metric-for-best-model", "loss"]
    _finish(_torchrun(args))
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] >= 1


def test_two_process_flux_lora_trains_through_ddp_with_ema(icons, tiny_flux_dir, tmp_path):
    """The flow-matching family on two processes: DDP wraps the Flux transformer (its config read through
    `.module`), the text-encoder LoRA trains on CLIP only, and the EMA weights go to OUT/ and the raw ones to raw/."""
    from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME

    args = [
        "train",
        "lora",
        "--base",
        tiny_flux_dir,
        "--data",
        icons,
        "--instance-prompt",
        "a 3D icon in the style of TOK",
    ]
    args += ["--caption-column", "text", "--resolution", "64", "--train-batch-size", "1", "--max-train-steps", "4"]
    args += ["--learning-rate", "1e-2", "--max-sequence-length", "16", "--train-text-encoder", "--use-ema"]
    args += ["--caption-dropout-rate", "0.2", "--num-validation-images", "0", "--out", tmp_path / "flux"]
    _finish(_torchrun(args))
    summary = json.loads((tmp_path / "flux" / "train_summary.json").read_text())
    assert (summary["num_processes"], summary["steps"], summary["family"]) == (2, 4, "flux")
    ema, raw = (
        load_file(str(tmp_path / "flux" / DIFFUSERS_WEIGHT_NAME)),
        load_file(str(tmp_path / "flux" / "raw" / DIFFUSERS_WEIGHT_NAME)),
    )
    assert {k.split(".")[0] for k in ema} == {"transformer", "text_encoder"} and ema.keys() == raw.keys()
