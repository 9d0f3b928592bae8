"""BLIP, ViT-GPT2 and CNN-LSTM through the captioner protocol, on tiny models of the real classes."""

import pytest
import torch
from PIL import Image

from vlgen.captioning.blip import BlipCaptioner
from vlgen.captioning.registry import create_captioner, family_of, load_captioner
from vlgen.captioning.vit_gpt2 import VitGpt2Captioner
from vlgen.errors import ConfigError, ModelNotAvailableError

CAPTIONS = ["a red circle", "a blue square above a green circle"]


def _images():
    return [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (50, 50), (0, 0, 255))]


@pytest.fixture(params=["blip", "vit-gpt2", "cnn-lstm"])
def tiny_dir(request):
    return request.getfixturevalue(f"tiny_{request.param.replace('-', '_')}_dir"), request.param


def test_family_detection_and_load(tiny_dir):
    path, family = tiny_dir
    assert family_of(path) == family
    cap = load_captioner(path)
    assert cap.family == family
    out = cap.generate(_images(), num_beams=1, max_new_tokens=6)
    assert len(out) == 2 and all(isinstance(c, str) for c in out)


def test_training_steps_fit_a_fixed_batch_and_save_load_is_exact(tiny_dir, tmp_path):
    path, family = tiny_dir
    torch.manual_seed(0)
    cap = load_captioner(path)
    batch = cap.collate(_images(), CAPTIONS, max_length=20)
    opt = torch.optim.AdamW(cap.trainable_parameters(), lr=1e-2 if family == "cnn-lstm" else 2e-3)
    cap.model.train()
    losses = []
    for _ in range(40):
        loss = cap.loss(batch)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    before = cap.generate(_images(), num_beams=2, max_new_tokens=12)
    if family != "vit-gpt2":  # the tiny GPT-2 BPE needs more steps; the loss check above covers it
        assert before == CAPTIONS
    cap.save(tmp_path / "saved")
    again = load_captioner(tmp_path / "saved")
    assert again.generate(_images(), num_beams=2, max_new_tokens=12) == before


def test_blip_trains_on_dec_prefix_and_masks_padding(tiny_blip_dir):
    cap = BlipCaptioner.load(tiny_blip_dir)
    batch = cap.collate(_images(), CAPTIONS, max_length=20)
    dec = cap.processor.tokenizer.convert_tokens_to_ids("[DEC]")
    assert (batch["input_ids"][:, 0] == dec).all()  # generate() starts from [DEC], so training must too
    assert batch["labels"][0, -1] == -100  # the shorter caption is padded and ignored
    sep = cap.processor.tokenizer.sep_token_id
    assert (batch["labels"] == sep).sum() == 2  # each caption ends with [SEP], BLIP's eos


def test_vit_gpt2_keeps_eos_in_labels_although_pad_equals_eos(tiny_vit_gpt2_dir):
    cap = VitGpt2Captioner.load(tiny_vit_gpt2_dir)
    eos = cap.tokenizer.eos_token_id
    assert cap.model.config.pad_token_id == eos and cap.model.config.decoder_start_token_id is not None
    batch = cap.collate(_images(), CAPTIONS, max_length=64)
    labels = batch["labels"]
    for row, text in zip(labels, CAPTIONS, strict=True):
        ids = row[row != -100].tolist()
        assert ids[-1] == eos and cap.tokenizer.decode(ids[:-1]) == text
    truncated = cap.collate(_images(), CAPTIONS, max_length=4)["labels"]
    assert truncated.shape[1] == 4 and (truncated[:, -1] == eos).all()  # truncation keeps the eos


def test_registry_errors(tmp_path):
    with pytest.raises(ConfigError, match="training captions"):
        create_captioner("cnn-lstm")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelNotAvailableError, match="model_type 'bert' is not a captioner"):
        load_captioner(tmp_path)
    with pytest.raises(ModelNotAvailableError, match="config.json is missing"):
        load_captioner(tmp_path / "..")
