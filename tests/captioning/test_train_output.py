"""What `vlgen train caption` prints and writes beside the model (issue 14, item 9): no resume notice on a
fresh run, scores at a sensible precision, epochs counted from 1 everywhere, outputs with the usual modes."""

from __future__ import annotations

import csv
import json
import os
import re
import stat

import pytest

from vlgen.cli import main
from vlgen.data.synth import synth_dataset

TINY_CNN_LSTM = [
    "--encoder", "tiny", "--encoder-weights", "none", "--no-freeze-encoder", "--no-attention",
    "--image-size", "32", "--embed-dim", "8", "--hidden-dim", "16",
]  # fmt: skip
LONG_FLOAT = re.compile(r"\d\.\d{7,}")  # 2.6500783447471926e-17: more digits than anyone reads


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    synth_dataset(out, n=24, seed=0, image_size=32, progress=False)
    return out


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_fresh_run_output_precision_epochs_and_modes(synth, tmp_path, capsys, umask_022):
    out = tmp_path / "run"
    args = ["train", "caption", "--data", str(synth), "--out", str(out), *TINY_CNN_LSTM, "--epochs", "2"]
    args += ["--train-batch-size", "8", "--resume-from-checkpoint", "latest", "--seed", "0"]
    args += ["--metric-for-best-model", "loss"]  # no Java coco metrics: seconds, not a minute
    assert main(args) == 0
    cap = capsys.readouterr()

    assert "no checkpoint" not in cap.err  # a fresh run has nothing to resume: nothing to say about it
    summary = " ".join(cap.out.split())
    assert summary.startswith("trained ") and re.search(r"\(loss \d\.\d{4}\)$", summary), summary  # not -3.128019...
    assert not LONG_FLOAT.search(cap.err), cap.err  # the per-epoch validation lines too

    with open(out / "history.csv") as f:
        val_epochs = [r["epoch"] for r in csv.DictReader(f) if r.get("val_loss")]
    assert val_epochs == ["1", "2"]
    preds = [json.loads(line) for line in (out / "validation_predictions.jsonl").read_text().splitlines()]
    assert {p["epoch"] for p in preds} == {2}  # the last validation, numbered as in history.csv

    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert "config.yaml" in modes and "train_summary.json" in modes
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != 0o644}
    assert not wrong, f"outputs not written 0644 like the rest: {wrong}"


def test_resume_latest_into_a_run_without_checkpoints_says_so(synth, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "caption", "--data", str(synth), "--out", str(out), *TINY_CNN_LSTM, "--epochs", "1"]
    base += ["--train-batch-size", "8", "--seed", "0", "--checkpointing-steps", "100"]  # never reached: none saved
    base += ["--metric-for-best-model", "loss"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--resume-from-checkpoint", "latest"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "no checkpoint in" in err and "starting from scratch" in err
