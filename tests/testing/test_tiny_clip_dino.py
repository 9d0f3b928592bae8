"""Tiny CLIP and DINO (the image-metric backbones): tokenizer, processor sizes, faithful round trip."""

import torch
from PIL import Image
from safetensors import safe_open
from transformers import CLIPModel, CLIPProcessor, ViTImageProcessor, ViTModel

from vlgen.hub import resolve_model
from vlgen.testing.clip import tiny_clip
from vlgen.testing.dino import tiny_dino


def test_clip_tokenizer_encodes_captions_without_unknowns(tiny_clip_dir):
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    tok = processor.tokenizer
    ids = tok("a red circle").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert len(ids) == 5  # <|startoftext|> a</w> red</w> circle</w> <|endoftext|>
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.model_max_length == 77
    assert len(tok) == CLIPModel.from_pretrained(tiny_clip_dir).config.text_config.vocab_size


def test_clip_round_trip_gives_identical_embeddings(tiny_clip_dir):
    path = resolve_model(tiny_clip_dir).path
    loaded = CLIPModel.from_pretrained(path).eval()
    processor = CLIPProcessor.from_pretrained(path)
    model, _ = tiny_clip(seed=0)
    images = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0))]
    inputs = processor(text=["a red circle", "a green square"], images=images, return_tensors="pt", padding=True)
    assert inputs["pixel_values"].shape == (2, 3, 32, 32)
    with torch.no_grad():
        a, b = loaded(**inputs), model(**inputs)
    assert a.image_embeds.shape == a.text_embeds.shape == (2, 32)
    for key in ("logits_per_image", "image_embeds", "text_embeds"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_dino_has_no_pooler_and_round_trips(tiny_dino_dir):
    with safe_open(str(tiny_dino_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("pooler" in k for k in keys)  # like facebook/dino-vits16

    path = resolve_model(tiny_dino_dir).path
    loaded = ViTModel.from_pretrained(path, add_pooling_layer=False).eval()
    assert loaded.pooler is None
    image_processor = ViTImageProcessor.from_pretrained(path)
    pixel_values = image_processor(images=Image.new("RGB", (50, 50), (10, 200, 10)), return_tensors="pt").pixel_values
    model, _ = tiny_dino(seed=0)
    with torch.no_grad():
        out = loaded(pixel_values=pixel_values).last_hidden_state
        torch.testing.assert_close(out, model(pixel_values=pixel_values).last_hidden_state, rtol=1e-5, atol=1e-6)
    assert out.shape == (1, 17, 32)  # [CLS] + (32/8)^2 patches; DINO features = out[:, 0]
