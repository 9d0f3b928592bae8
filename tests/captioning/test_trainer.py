"""The caption trainer on tiny models: learning, outputs, exact resume after SIGKILL, input checks."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlgen.captioning.train_config import CaptionTrainConfig
from vlgen.captioning.trainer import epoch_batches, train_captioner
from vlgen.checkpointing import list_checkpoints
from vlgen.cli import main
from vlgen.data.synth import synth_dataset

TINY_CNN_LSTM = [
    "--encoder", "tiny", "--encoder-weights", "none", "--no-freeze-encoder", "--attention",
    "--image-size", "32", "--embed-dim", "16", "--hidden-dim", "32", "--attention-dim", "16",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    synth_dataset(out, n=60, seed=0, image_size=32)
    return out


def _run(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "VLGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "vlgen", *args], env=env, stderr=subprocess.PIPE, text=True)


def test_epoch_order_is_seeded_and_covers_every_sample():
    a = epoch_batches(10, 4, seed=1, epoch=0)
    assert a == epoch_batches(10, 4, seed=1, epoch=0)
    assert a != epoch_batches(10, 4, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(10))
    assert [len(b) for b in a] == [4, 4, 2]


def test_training_writes_models_curves_and_config(synth, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "caption", "--data", str(synth), "--out", str(out), *TINY_CNN_LSTM]
    args += ["--epochs", "3", "--train-batch-size", "8", "--learning-rate", "1e-2", "--seed", "0"]
    assert main(args) == 0
    for name in ("best/model.safetensors", "last/model.safetensors", "history.csv", "curves.png", "config.yaml"):
        assert (out / name).is_file(), name
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    train_losses = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    assert train_losses[-1] < train_losses[0]
    val = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    assert len(val) == 3  # one validation per epoch
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 * 5  # 36 train images -> 36 samples -> 5 batches of 8
    preds = [json.loads(x) for x in (out / "validation_predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 12 and all(isinstance(p["prediction"], str) for p in preds)
    # The saved best model reloads through the registry and captions.
    from vlgen.captioning.registry import load_captioner
    from vlgen.data import load_image, load_records

    cap = load_captioner(out / "best")
    recs = load_records(synth, split="test")
    assert len(cap.generate([load_image(r.path) for r in recs[:3]], num_beams=2)) == 3
    assert "trained 15 steps" in capsys.readouterr().out
    assert not list(out.rglob("events.out.tfevents.*"))  # TensorBoard only when asked (--report-to)


# Per family: the options that build a tiny model of it and how long to train. Each run is killed right
# after its first checkpoint (step 4; 5 steps an epoch), so the resume starts mid-epoch and crosses at least
# one epoch boundary (validation, best-model choice) before it ends. ViT-GPT2 stays in the fast tier (its
# GPT-2 half has dropout 0.1, so it checks the RNG streams of an HF model); it picks the best model by loss
# because the Java caption metrics cost ~10 s per validation. BLIP runs with them, in the slow tier.
_HF_RESUME = ["--epochs", "2", "--max-length", "24", "--max-new-tokens", "8"]
RESUME_FAMILIES = {
    "cnn-lstm": lambda request: [*TINY_CNN_LSTM, "--dropout", "0.3", "--epochs", "6", "--learning-rate", "5e-3"],
    "vit-gpt2": lambda request: [
        *("--model", str(request.getfixturevalue("tiny_vit_gpt2_dir")), *_HF_RESUME),
        *("--metric-for-best-model", "loss"),
    ],
    "blip": lambda request: ["--model", str(request.getfixturevalue("tiny_blip_dir")), *_HF_RESUME],
}


@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=[pytest.mark.slow] if f == "blip" else []) for f in RESUME_FAMILIES]
)
def test_resume_after_sigkill_is_bit_identical(synth, tmp_path, request, family, sigkill_at_first_checkpoint):
    common = ["train", "caption", "--data", str(synth), *RESUME_FAMILIES[family](request), "--seed", "3"]
    common += ["--train-batch-size", "4", "--gradient-accumulation-steps", "2"]
    common += ["--checkpointing-steps", "4", "--checkpoints-total-limit", "2", "--lr-scheduler", "cosine"]
    common += ["--validation-split", "validation"]

    ref = _run([*common, "--out", str(tmp_path / "ref")])
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    out = tmp_path / "killed"
    proc = _run([*common, "--out", str(out)])
    sigkill_at_first_checkpoint(proc, out / "checkpoints", out / "last", timeout=120)
    killed_at = list_checkpoints(out / "checkpoints")[-1]

    resumed = _run([*common, "--out", str(out), "--resume-from-checkpoint", "latest"])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resumed from {killed_at}" in " ".join(err.split())

    for name in ("last", "best"):
        a = load_file(str(tmp_path / "ref" / name / "model.safetensors"))
        b = load_file(str(out / name / "model.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert (tmp_path / "ref" / "history.csv").read_text() == (out / "history.csv").read_text()
    assert len(list_checkpoints(out / "checkpoints")) == 2  # keep-limit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--learning-rate", "-1"], "--learning-rate must be positive"),
        (["--lr-scheduler", "step"], "Invalid value for '--lr-scheduler'"),
        (["--model", "/nonexistent/model"], "no such directory"),
        (["--caption-column", "prompt"], "'prompt'"),
        (["--train-split", "validation", "--validation-split", "bogus"], "unknown split 'bogus'"),
    ],
)
def test_bad_options_fail_with_one_line(synth, tmp_path, capsys, args, message):
    code = main(["train", "caption", "--data", str(synth), "--out", str(tmp_path / "o"), *TINY_CNN_LSTM, *args])
    err = capsys.readouterr().err
    assert code != 0
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_config_file_and_cli_override(synth, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {synth}\nencoder: tiny\nencoder_weights: none\nimage_size: 32\nepochs: 5\n")
    out = tmp_path / "o"
    cfg_over = {"out": str(out), "epochs": 1, "hidden_dim": 16, "embed_dim": 8, "validation_split": None}
    from vlgen.config import resolve_config

    cfg = resolve_config(CaptionTrainConfig, recipe, cfg_over)
    assert cfg.epochs == 1 and cfg.encoder == "tiny"
    summary = train_captioner(cfg)
    assert summary["steps"] == 2  # 36 samples / 32 per batch
    saved = (out / "config.yaml").read_text()
    assert "epochs: 1" in saved and "encoder: tiny" in saved
    assert Path(out / "best").is_dir()  # no validation split: last model doubles as best


@pytest.mark.parametrize(
    "name", [n for n in __import__("vlgen.config", fromlist=["x"]).shipped_configs() if "lora" not in n]
)
def test_shipped_recipes_resolve(name):
    from vlgen.config import resolve_config

    cfg = resolve_config(CaptionTrainConfig, name, {"data": "d", "out": "o"})
    assert cfg.model in {"cnn-lstm", "blip", "vit-gpt2", "florence-2"}
    assert cfg.metric_for_best_model == "CIDEr+BLEU-4"


def test_seed_recipes_carry_the_write_ups_settings():
    from vlgen.config import resolve_config

    blip = resolve_config(CaptionTrainConfig, "blip-diffusiondb")
    assert (blip.epochs, blip.learning_rate, blip.lr_scheduler) == (10, 1e-4, "cosine_with_restarts")
    assert (blip.weight_decay, blip.gradient_accumulation_steps, blip.max_length) == (1e-6, 4, 128)
    vg = resolve_config(CaptionTrainConfig, "vit-gpt2-diffusiondb")
    assert (vg.epochs, vg.train_batch_size, vg.gradient_accumulation_steps, vg.learning_rate) == (6, 4, 2, 5e-5)
    assert (vg.mixed_precision, vg.max_length, vg.num_beams) == ("fp16", 80, 4)


def test_report_to_tensorboard_writes_the_train_loss(synth, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    args = ["train", "caption", "--data", str(synth), "--out", str(out), *TINY_CNN_LSTM, "--epochs", "2"]
    args += ["--train-batch-size", "8", "--metric-for-best-model", "loss", "--report-to", "tensorboard"]
    assert main(args) == 0
    events = sorted(out.rglob("events.out.tfevents.*"))
    assert events, f"no event file under {out}"
    acc = EventAccumulator(str(events[0].parent)).Reload()
    assert {"train/loss", "train/lr", "val/val_loss"} <= set(acc.Tags()["scalars"])
    with open(out / "history.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["train_loss"]]
    logged = acc.Scalars("train/loss")
    assert [e.step for e in logged] == [int(r["step"]) for r in rows] == list(range(1, 11))
    assert [e.value for e in logged] == pytest.approx([float(r["train_loss"]) for r in rows], rel=1e-6)
    assert len(acc.Scalars("val/val_loss")) == 2


def test_report_to_tensorboard_without_the_package_fails_with_one_line(synth, tmp_path, capsys, monkeypatch):
    # Accelerate would drop the tracker with a debug message and the run would log nothing: say so up front.
    monkeypatch.setattr("vlgen.captioning.trainer.tensorboard_available", lambda: False)
    args = ["train", "caption", "--data", str(synth), "--out", str(tmp_path / "o"), *TINY_CNN_LSTM]
    assert main([*args, "--report-to", "tensorboard"]) != 0
    err = capsys.readouterr().err
    assert "--report-to tensorboard needs the tensorboard package: pip install tensorboard" in " ".join(err.split())
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return " ".join(err.split())


def test_out_holding_another_run_is_refused_cleared_or_resumed_with_the_same_options(synth, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "caption", "--data", str(synth), "--out", str(out), *TINY_CNN_LSTM]
    base += ["--validation-split", "", "--train-batch-size", "8", "--checkpointing-steps", "1"]
    assert main([*base, "--max-train-steps", "2"]) == 0
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-1", "checkpoint-2"]
    capsys.readouterr()

    # A new run into the same --out: refused in one line, nothing touched.
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main([*base, "--max-train-steps", "1"]) == 1
    err = _one_line_error(capsys)
    assert str(out) in err and "--overwrite-output-dir" in err and "--resume-from-checkpoint" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before

    # Resuming with options that change what is learnt: refused, naming the keys.
    assert main([*base, "--max-train-steps", "2", "--resume-from-checkpoint", "latest", "--learning-rate", "0.5"]) == 1
    err = _one_line_error(capsys)
    assert "learning_rate: 0.001 -> 0.5" in err and "--overwrite-output-dir" in err
    # ... the run length may change (it extends the run).
    assert main([*base, "--max-train-steps", "3", "--resume-from-checkpoint", "latest"]) == 0
    assert "resumed from" in " ".join(capsys.readouterr().err.split())
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 3

    # --overwrite-output-dir clears the old run: none of its checkpoints survive.
    assert main([*base, "--max-train-steps", "1", "--overwrite-output-dir"]) == 0
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["checkpoint-1"]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 1
    assert "overwrite_output_dir: false" in (out / "config.yaml").read_text()


def test_overwrite_output_dir_never_clears_a_folder_without_a_run(synth, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["train", "caption", "--data", str(synth), "--out", str(out), *TINY_CNN_LSTM, "--overwrite-output-dir"]
    assert main(args) == 1
    assert "holds no vlgen run" in _one_line_error(capsys)
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("recipe", "fixture", "extra", "message"),
    [
        ("blip-diffusiondb", "tiny_blip_dir", [], "--max-length 128 is over the limit of the blip model"),
        ("blip-diffusiondb", "tiny_blip_dir", ["--max-length", "32"], "--max-new-tokens 128 is over the limit"),
        ("vit-gpt2-diffusiondb", "tiny_vit_gpt2_dir", ["--mixed-precision", "no"], "--max-length 80 is over"),
    ],
)
def test_recipe_lengths_are_checked_against_the_model_before_training(
    synth, tmp_path, request, capsys, recipe, fixture, extra, message
):
    model = request.getfixturevalue(fixture)
    out = tmp_path / "o"
    args = ["train", "caption", "--config", recipe, "--model", str(model), "--data", str(synth), "--out", str(out)]
    assert main([*args, *extra]) == 1
    err = _one_line_error(capsys)
    assert message in err and "text positions" in err
    assert not out.exists() or not any(out.iterdir())  # nothing trained, nothing to lose


def test_out_under_a_file_fails_in_one_line_before_training(synth, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "caption", "--data", str(synth), "--out", str(blocker / "run"), *TINY_CNN_LSTM]) == 1
    err = _one_line_error(capsys)
    assert str(blocker) in err and "folder" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric-for-best-model", "BLEU4"], "'BLEU4' is not a validation metric"),
        (["--num-beams", "0"], "--num-beams must be at least 1, got 0"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
    ],
)
def test_options_first_used_at_validation_fail_before_training(synth, tmp_path, capsys, args, message):
    out = tmp_path / "o"
    assert main(["train", "caption", "--data", str(synth), "--out", str(out), *TINY_CNN_LSTM, *args]) == 1
    assert message in _one_line_error(capsys)
    assert not out.exists()  # nothing trained, nothing to lose
