"""Tiny ViT-GPT2: GPT-2 style tokenizer and special ids like nlconnect's, faithful save/load round trip."""

import torch
from PIL import Image
from transformers import AutoTokenizer, VisionEncoderDecoderModel, ViTImageProcessor

from vlgen.hub import resolve_model
from vlgen.testing.vit_gpt2 import tiny_vit_gpt2


def test_tokenizer_round_trips_a_sentence(tiny_vit_gpt2_dir):
    tok = AutoTokenizer.from_pretrained(tiny_vit_gpt2_dir)
    assert 300 < len(tok) <= 1000
    assert tok.eos_token == tok.bos_token == "<|endoftext|>" and tok.eos_token_id == len(tok) - 1
    assert tok.pad_token is None  # like the real GPT-2 tokenizer: callers must pick a pad token
    sentence = "A dog is playing with a red ball, next to 2 trees!"
    ids = tok(sentence).input_ids
    assert tok.decode(ids) == sentence
    assert len(tok("a red circle").input_ids) == 3  # "a", " red", " circle" are learned tokens


def test_generation_ids_are_those_of_nlconnect(tiny_vit_gpt2_dir):
    model = VisionEncoderDecoderModel.from_pretrained(tiny_vit_gpt2_dir)
    eos = AutoTokenizer.from_pretrained(tiny_vit_gpt2_dir).eos_token_id
    c = model.config
    assert (c.decoder_start_token_id, c.pad_token_id, c.eos_token_id, c.decoder.eos_token_id) == (eos,) * 4
    assert c.decoder.add_cross_attention and c.decoder.vocab_size == eos + 1
    assert model.generation_config.decoder_start_token_id == eos


def test_round_trip_through_resolver_gives_identical_outputs(tiny_vit_gpt2_dir):
    path = resolve_model(tiny_vit_gpt2_dir).path
    loaded = VisionEncoderDecoderModel.from_pretrained(path).eval()
    image_processor = ViTImageProcessor.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    model, _, _ = tiny_vit_gpt2(seed=0)

    pixel_values = image_processor(images=Image.new("RGB", (40, 50), (0, 0, 255)), return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 32, 32)
    labels = tok(["a blue square"], return_tensors="pt").input_ids
    with torch.no_grad():
        logits = loaded(pixel_values=pixel_values, labels=labels).logits
        torch.testing.assert_close(logits, model(pixel_values=pixel_values, labels=labels).logits, rtol=1e-5, atol=1e-6)
        ids = loaded.generate(pixel_values)
        assert torch.equal(ids, model.generate(pixel_values))
    assert ids[0, 0].item() == tok.eos_token_id  # decoding starts from <|endoftext|>
    assert tok.decode(ids[0], skip_special_tokens=True).strip()  # a random but non-empty caption
