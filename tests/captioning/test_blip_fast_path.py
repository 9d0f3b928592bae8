"""BlipCaptioner.generate's fast path (inference_mode + SDPA vision attention) gives plain `generate`'s output."""

import numpy as np
import torch
from PIL import Image

import vlgen.captioning.blip as blip_module
from vlgen.captioning.blip import BlipCaptioner, sdpa_vision_attention


def _images(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 40, 3), dtype=np.uint8)) for i in range(n)]


def _plain_captions(cap: BlipCaptioner, images, **kw) -> list[str]:
    """What a user of transformers alone would write: processor + model.generate + batch_decode."""
    with torch.no_grad():
        pv = cap.processor(images=images, return_tensors="pt").pixel_values
        ids = cap.model.generate(pixel_values=pv, do_sample=False, **kw)
    return [" ".join(t.split()) for t in cap.processor.batch_decode(ids, skip_special_tokens=True)]


def test_greedy_and_beam_captions_identical_to_plain_generate(tiny_blip_dir, monkeypatch):
    cap = BlipCaptioner.load(tiny_blip_dir)
    images = _images()
    sdpa_calls = []
    real_sdpa = blip_module.F.scaled_dot_product_attention
    monkeypatch.setattr(
        blip_module.F, "scaled_dot_product_attention", lambda *a, **k: sdpa_calls.append(1) or real_sdpa(*a, **k)
    )
    for kw in ({"num_beams": 1, "max_new_tokens": 12}, {"num_beams": 3, "max_new_tokens": 8}):
        fast = cap.generate(images, min_new_tokens=kw["max_new_tokens"], **kw)
        assert sdpa_calls  # the fast path ran (one call per ViT layer)
        sdpa_calls.clear()
        assert fast == _plain_captions(cap, images, min_new_tokens=kw["max_new_tokens"], **kw)
        assert not sdpa_calls  # and the reference did not


def test_sdpa_vision_attention_matches_eager_and_is_restored(tiny_blip_dir):
    cap = BlipCaptioner.load(tiny_blip_dir)
    pv = cap.processor(images=_images(2), return_tensors="pt").pixel_values
    with torch.no_grad():
        eager = cap.model.vision_model(pixel_values=pv).last_hidden_state
        with sdpa_vision_attention(cap.model):
            with sdpa_vision_attention(cap.model):  # nested: the inner block patches nothing and restores nothing
                pass
            assert all("forward" in layer.self_attn.__dict__ for layer in cap.model.vision_model.encoder.layers)
            sdpa = cap.model.vision_model(pixel_values=pv).last_hidden_state
    torch.testing.assert_close(sdpa, eager, rtol=1e-5, atol=1e-5)
    assert not any("forward" in m.__dict__ for m in cap.model.modules())  # transformers' eager path is back


def test_generate_restores_training_mode_and_leaves_no_patch(tiny_blip_dir):
    cap = BlipCaptioner.load(tiny_blip_dir)
    cap.model.train()
    cap.generate(_images(1), max_new_tokens=4)
    assert cap.model.training
    assert not any("forward" in m.__dict__ for m in cap.model.modules())
