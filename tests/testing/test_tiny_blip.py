"""Tiny BLIP: real tokenizer ids, BLIP's special-token conventions, and a faithful save/load round trip."""

import torch
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor

from vlgen.hub import resolve_model
from vlgen.testing.blip import BLIP_DEC_ID, BLIP_ENC_ID, BLIP_VOCAB_SIZE, tiny_blip


def test_tokenizer_is_bert_uncased_plus_dec_and_enc(tiny_blip_dir):
    tok = BlipProcessor.from_pretrained(tiny_blip_dir).tokenizer
    assert len(tok) == BLIP_VOCAB_SIZE == 30524
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [BLIP_DEC_ID, BLIP_ENC_ID] == [30522, 30523]
    assert tok.bos_token == "[DEC]" and "[ENC]" in tok.all_special_tokens
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 101, 102)
    ids = tok("A red circle").input_ids
    assert ids == [101, 1037, 2417, 4418, 102]  # lower-cased WordPiece, [CLS] ... [SEP]
    assert tok.decode(ids, skip_special_tokens=True) == "a red circle"


def test_config_ids_match_the_tokenizer_and_the_real_checkpoint(tiny_blip_dir):
    model = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir)
    text = model.config.text_config
    assert text.vocab_size == BLIP_VOCAB_SIZE
    assert (text.bos_token_id, text.sep_token_id, text.pad_token_id, text.eos_token_id) == (30522, 102, 0, 2)
    assert model.config.vision_config.image_size == 32


def test_round_trip_through_resolver_gives_identical_outputs(tiny_blip_dir):
    resolved = resolve_model(tiny_blip_dir, what="captioning model")
    assert resolved.source == "local" and resolved.path == tiny_blip_dir.resolve()
    loaded = BlipForConditionalGeneration.from_pretrained(resolved.path).eval()
    processor = BlipProcessor.from_pretrained(resolved.path)
    model, _ = tiny_blip(seed=0)

    image = Image.new("RGB", (48, 40), (200, 30, 30))
    inputs = processor(images=image, text="a picture of", return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=1e-5, atol=1e-6)
        pixel_values = inputs["pixel_values"]
        ids_loaded = loaded.generate(pixel_values=pixel_values, max_new_tokens=6)
        ids_memory = model.generate(pixel_values=pixel_values, max_new_tokens=6)
    assert torch.equal(ids_loaded, ids_memory)
    assert ids_loaded[0, 0].item() == BLIP_DEC_ID  # BLIP starts decoding from [DEC]
    assert ids_loaded.shape[1] > 1
