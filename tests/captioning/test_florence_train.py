"""Florence-2 fine-tunes like BLIP (issue 18 item 1): `vlgen train caption --model florence-2 | ID | DIR` on a tiny
Florence-2 - the training batch, the loss falling, the saved best/ (a Florence-2 checkpoint that `from_pretrained` and
`vlgen caption` load), exact resume, the shipped florence2-diffusiondb recipe - and other vision-language checkpoints
refused for training in one line naming what trains."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from vlgen.captioning.registry import check_trainable, family_of, load_captioner
from vlgen.captioning.train_config import TRAINABLE_FAMILIES, CaptionTrainConfig
from vlgen.captioning.vlm import VisionLanguageCaptioner
from vlgen.cli import main
from vlgen.data.images import load_image
from vlgen.data.records import load_records
from vlgen.data.synth import synth_dataset
from vlgen.errors import ConfigError
from vlgen.hub import DEFAULT_MODELS

FAST = ["--max-length", "24", "--max-new-tokens", "8", "--train-batch-size", "4", "--seed", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("florence-train") / "data"
    synth_dataset(out, n=20, seed=0, image_size=32, progress=False)  # 12 train, 4 validation, 4 test images
    return out


@pytest.fixture(scope="module")
def trained(florence_dir, data, tmp_path_factory):
    """One run of `vlgen train caption` on the tiny Florence-2: 3 epochs of 3 steps, best model by validation loss."""
    out = tmp_path_factory.mktemp("florence-train") / "run"
    args = ["train", "caption", "--model", str(florence_dir), "--data", str(data), "--out", str(out), *FAST]
    args += ["--epochs", "3", "--learning-rate", "5e-3", "--metric-for-best-model", "loss"]
    assert main(args) == 0
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([x for x in err.strip().splitlines() if x.startswith("error:")]) == 1, err
    return " ".join(err.split())


def test_collate_puts_the_prompt_and_image_in_and_the_caption_in_the_labels(florence_dir, data):
    captioner = load_captioner(florence_dir)
    tok = captioner.tokenizer
    images = [load_image(r.path) for r in load_records(data, split="train")[:2]]
    captions = ["a red circle", "two small blue squares above a large green diamond"]
    batch = captioner.collate(images, captions, max_length=8)
    # The encoder's input is what generate() gets: image tokens and the <CAPTION> instruction.
    generate_inputs = captioner._inputs(images, captioner.prompt)
    assert torch.equal(batch["input_ids"], generate_inputs["input_ids"])
    assert torch.equal(batch["pixel_values"], generate_inputs["pixel_values"])
    # Labels: <s> caption </s>, cut to max_length with </s> kept, padding -100 (the pad token is not learnt).
    labels = batch["labels"]
    assert labels.shape == (2, 8)
    short = tok("a red circle").input_ids
    assert labels[0, : len(short)].tolist() == short and (labels[0, len(short) :] == -100).all()
    assert labels[1, 0].item() == tok.bos_token_id and labels[1, -1].item() == tok.eos_token_id
    # The model shifts the labels right behind </s>, the token generation starts from.
    loss = captioner.loss(batch)
    decoder_input_ids = torch.cat([torch.full((2, 1), 2), labels[:, :-1].masked_fill(labels[:, :-1] == -100, 1)], 1)
    with torch.no_grad():
        logits = captioner.model(
            **{k: v for k, v in batch.items() if k != "labels"}, decoder_input_ids=decoder_input_ids
        )
    expected = torch.nn.functional.cross_entropy(logits.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_lowers_the_loss_and_saves_a_florence2_checkpoint(trained, florence_dir):
    with open(trained / "history.csv") as f:
        rows = list(csv.DictReader(f))
    train = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    val = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    assert len(train) == 9 and len(val) == 3
    assert sum(train[-3:]) < sum(train[:3]) and val[-1] < val[0]
    summary = json.loads((trained / "train_summary.json").read_text())
    assert summary["steps"] == 9 and summary["best_step"] == 9

    # best/ is a plain Florence-2 checkpoint: transformers loads it without vlgen, and its weights moved.
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    best = trained / "best"
    assert json.loads((best / "config.json").read_text())["model_type"] == "florence2"
    model = Florence2ForConditionalGeneration.from_pretrained(best)
    assert type(AutoProcessor.from_pretrained(best)).__name__ == "Florence2Processor"
    before, after = load_file(str(florence_dir / "model.safetensors")), load_file(str(best / "model.safetensors"))
    assert before.keys() == after.keys()
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2
    assert model.config.image_token_id == AutoProcessor.from_pretrained(best).tokenizer.image_token_id


def test_the_saved_best_model_captions_through_vlgen_caption(trained, data, tmp_path):
    out = tmp_path / "captions.jsonl"
    assert main(["caption", str(data), "--split", "test", "--model", str(trained / "best"), "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 4 and all(isinstance(r["caption"], str) for r in rows)
    captioner = load_captioner(trained / "best")
    assert isinstance(captioner, VisionLanguageCaptioner) and captioner.prompt == "<CAPTION>"


def test_resumed_run_equals_an_uninterrupted_one(florence_dir, data, tmp_path, capsys):
    common = ["train", "caption", "--model", str(florence_dir), "--data", str(data), *FAST]
    common += ["--validation-split", "", "--checkpointing-steps", "2", "--learning-rate", "1e-3"]
    assert main([*common, "--out", str(tmp_path / "ref"), "--max-train-steps", "4"]) == 0
    out = tmp_path / "resumed"
    assert main([*common, "--out", str(out), "--max-train-steps", "2"]) == 0
    assert main([*common, "--out", str(out), "--max-train-steps", "4", "--resume-from-checkpoint", "latest"]) == 0
    assert "resumed from" in " ".join(capsys.readouterr().err.split())
    a = load_file(str(tmp_path / "ref" / "last" / "model.safetensors"))
    b = load_file(str(out / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_a_qwen2_vl_checkpoint_is_refused_for_training_in_one_line(qwen_dir, data, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["train", "caption", "--model", str(qwen_dir), "--data", str(data), "--out", str(out)]) == 1
    err = _one_line_error(capsys)
    assert "qwen2_vl" in err and "cnn-lstm, blip, vit-gpt2, florence-2" in err
    assert not out.exists() or not any(out.iterdir())  # refused before anything was written
    captioner = load_captioner(qwen_dir)
    with pytest.raises(ConfigError, match="train caption trains cnn-lstm, blip, vit-gpt2, florence-2"):
        captioner.collate([], [], max_length=8)


def test_florence_2_is_a_family_name_for_florence_2_base(florence_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    assert DEFAULT_MODELS["florence-2"] == "florence-community/Florence-2-base"
    assert family_of("florence-2") == "vlm" and check_trainable("florence-2") == "vlm"  # no download to say so
    assert [check_trainable(n) for n in ("cnn-lstm", "blip", "vit-gpt2")] == ["cnn-lstm", "blip", "vit-gpt2"]
    assert check_trainable(florence_dir) == "vlm"
    # `--model florence-2` loads florence-community/Florence-2-base (here: a hub cache holding the tiny one).
    repo = tmp_path / "hub" / "models--florence-community--Florence-2-base"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / ("0" * 40)).symlink_to(florence_dir, target_is_directory=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    captioner = load_captioner("florence-2")
    assert isinstance(captioner, VisionLanguageCaptioner) and captioner.model_type == "florence2"


def test_help_says_which_families_train(capsys):
    assert main(["train", "caption", "--help"]) == 0
    shown = "".join(capsys.readouterr().out.split())  # the help wraps lines inside "vit-gpt2"
    assert "Familiesthattrain:cnn-lstm,blip,vit-gpt2,florence-2." in shown
    assert "whattrains:cnn-lstm(new),blip,vit-gpt2,florence-2(publishedcheckpoints)" in shown
    assert TRAINABLE_FAMILIES == ("cnn-lstm", "blip", "vit-gpt2", "florence-2")


def test_the_shipped_florence2_recipe_runs_on_the_tiny_model(florence_dir, data, tmp_path):
    from vlgen.config import resolve_config

    cfg = resolve_config(CaptionTrainConfig, "florence2-diffusiondb")
    assert cfg.model == "florence-2" and cfg.caption_column == "text"
    assert 1e-5 <= cfg.learning_rate <= 5e-5 and 77 <= cfg.max_length <= 128 and cfg.max_new_tokens >= cfg.max_length
    assert cfg.metric_for_best_model == "CIDEr+BLEU-4"
    # The recipe's options on the tiny model (its 128 text positions and the synthetic set's "text" column).
    out = tmp_path / "recipe"
    args = ["train", "caption", "--config", "florence2-diffusiondb", "--model", str(florence_dir)]
    args += ["--data", str(data), "--out", str(out), "--max-train-steps", "1", "--validation-split", ""]
    args += ["--max-length", "32", "--lr-warmup-steps", "0"]
    assert main(args) == 0
    assert (out / "best" / "model.safetensors").is_file()
    assert "model: " + str(florence_dir) in (out / "config.yaml").read_text()
