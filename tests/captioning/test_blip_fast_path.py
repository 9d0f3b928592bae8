"""BlipCaptioner.generate's fast path (SDPA vision attention, cross-attention on the encoder states) gives plain
`generate`'s output."""

import numpy as np
import torch
from PIL import Image

import vlgen.captioning.blip as blip_module
from vlgen.captioning.blip import BlipCaptioner, fast_generation, sdpa_vision_attention


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
    sdpa_calls, cross_calls = [], []
    real_sdpa = blip_module.F.scaled_dot_product_attention
    monkeypatch.setattr(
        blip_module.F, "scaled_dot_product_attention", lambda *a, **k: sdpa_calls.append(1) or real_sdpa(*a, **k)
    )
    real_cross = blip_module._encoder_states_cross_attention_forward
    monkeypatch.setattr(
        blip_module,
        "_encoder_states_cross_attention_forward",
        lambda *a, **k: cross_calls.append(1) or real_cross(*a, **k),
    )
    for kw in ({"num_beams": 1, "max_new_tokens": 12}, {"num_beams": 3, "max_new_tokens": 8}):
        fast = cap.generate(images, min_new_tokens=kw["max_new_tokens"], **kw)
        n_layers = cap.model.config.text_config.num_hidden_layers
        assert sdpa_calls  # the fast path ran (one call per ViT layer)
        assert len(cross_calls) == n_layers * kw["max_new_tokens"]  # every decoder layer, every step
        sdpa_calls.clear()
        cross_calls.clear()
        assert fast == _plain_captions(cap, images, min_new_tokens=kw["max_new_tokens"], **kw)
        assert not sdpa_calls and not cross_calls  # and the reference did not


def test_cross_attention_on_encoder_states_matches_transformers_projection(tiny_blip_dir):
    """The rewritten cross-attention equals transformers' (keys/values projected from X) for 1 and 3 query tokens."""
    cap = BlipCaptioner.load(tiny_blip_dir)
    attn = cap.model.text_decoder.bert.encoder.layer[0].crossattention.self
    torch.manual_seed(0)
    with torch.no_grad():
        for p in (attn.key.bias, attn.value.bias, attn.query.bias):
            p.normal_()  # non-zero biases: the key bias must cancel in softmax, the value bias must not
        x = torch.randn(2, 9, attn.key.in_features)  # (B, N, C_enc)
        for tgt_len in (1, 3):
            h = torch.randn(2, tgt_len, attn.query.in_features)
            ref, _ = attn(h, encoder_hidden_states=x)
            with fast_generation(cap.model):
                assert "forward" in attn.__dict__
                got, _ = attn(h, encoder_hidden_states=x)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert "forward" not in attn.__dict__


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


def test_vision_encoder_runs_in_chunks_on_cpu_with_the_same_outputs(tiny_blip_dir, monkeypatch):
    cap = BlipCaptioner.load(tiny_blip_dir)
    pv = cap.processor(images=_images(5), return_tensors="pt").pixel_values  # 5 images: chunks of 2, 2, 1
    seen = []
    real = type(cap.model.vision_model).forward
    monkeypatch.setattr(
        type(cap.model.vision_model),
        "forward",
        lambda self, **kw: seen.append(len(kw["pixel_values"])) or real(self, **kw),
    )
    with torch.no_grad():
        whole = cap.model.vision_model(pixel_values=pv)
        assert seen == [5]
        with fast_generation(cap.model):
            chunked = cap.model.vision_model(pixel_values=pv)
    assert seen[1:] == [blip_module.CPU_VISION_CHUNK] * 2 + [1]
    torch.testing.assert_close(chunked.last_hidden_state, whole.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked.pooler_output, whole.pooler_output, rtol=1e-5, atol=1e-5)
    assert "forward" not in cap.model.vision_model.__dict__
