"""BlipCaptioner.generate's fast path (SDPA vision attention, cross-attention on the encoder states) gives plain
`generate`'s output; it can be switched off; and it notices when transformers changes what it patches."""

import inspect

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import vlgen.captioning.blip_fast as blip_module
from vlgen.captioning.blip import BlipCaptioner
from vlgen.captioning.blip_fast import (
    ENV_VAR,
    INTERNALS,
    fast_generation,
    fast_path_enabled,
    internals_message,
    sdpa_vision_attention,
    transformers_internals_problems,
)
from vlgen.captioning.registry import load_captioner
from vlgen.errors import ConfigError


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


def test_transformers_internals_the_fast_path_patches_are_unchanged():
    """Fails loudly on a transformers upgrade that moves what blip_fast.py patches (names, signatures, attributes,
    or results on tiny modules). Then: adapt blip_fast.py, or ship with VLGEN_BLIP_FAST_PATH=0 meanwhile."""
    problems = transformers_internals_problems()
    assert not problems, internals_message(problems)
    import importlib

    for module_name, wanted in INTERNALS.items():  # the exact private names, spelled out once more
        module = importlib.import_module(module_name)
        for cls_name, (params, _) in wanted.items():
            method = getattr(module, cls_name).generate if cls_name.endswith("Generation") else None
            names = inspect.signature(method or getattr(module, cls_name).forward).parameters
            assert set(params) <= set(names), f"transformers {transformers.__version__}: {cls_name} {list(names)}"


def test_internals_check_names_the_change_and_the_transformers_version(monkeypatch):
    from transformers.models.blip.modeling_blip import BlipAttention

    def forward_with_mask(self, hidden_states, attention_mask=None, **kwargs):  # what a future version might do
        raise AssertionError("not called by the check")

    monkeypatch.setattr(BlipAttention, "forward", forward_with_mask)
    blip_module._problems.cache_clear()
    try:
        problems = transformers_internals_problems()
        assert problems and "BlipAttention.forward(self, hidden_states, attention_mask, kwargs)" in problems[0]
        assert f"transformers {transformers.__version__} changed" in internals_message(problems)
        with pytest.warns(RuntimeWarning, match=f"transformers {transformers.__version__}.*{ENV_VAR}=0"):
            assert not blip_module.fast_path_usable(True)  # falls back to plain transformers
    finally:
        monkeypatch.undo()
        blip_module._problems.cache_clear()
    assert not transformers_internals_problems()


def test_fast_path_on_and_off_give_the_same_captions(tiny_blip_dir, monkeypatch):
    images = _images(3)
    on, off = BlipCaptioner.load(tiny_blip_dir), load_captioner(tiny_blip_dir, fast_path=False)
    assert on.fast_path and not off.fast_path
    entered = []
    real = blip_module.fast_generation
    monkeypatch.setattr(
        "vlgen.captioning.blip.fast_generation", lambda model: entered.append(1) or real(model), raising=True
    )
    for kw in ({"num_beams": 1, "max_new_tokens": 10}, {"num_beams": 3, "max_new_tokens": 6}):
        assert off.generate(images, min_new_tokens=kw["max_new_tokens"], **kw) == on.generate(
            images, min_new_tokens=kw["max_new_tokens"], **kw
        )
    assert len(entered) == 2  # only the captioner with the fast path entered it


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("off", False), ("1", True), ("", True)])
def test_environment_variable_switches_the_fast_path(tiny_blip_dir, monkeypatch, value, expected):
    monkeypatch.setenv(ENV_VAR, value)
    assert fast_path_enabled() is expected
    assert load_captioner(tiny_blip_dir).fast_path is expected
    assert load_captioner(tiny_blip_dir, fast_path=True).fast_path  # the argument wins over the environment


def test_bad_environment_value_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ConfigError, match=f"{ENV_VAR}='maybe': expected 1 or 0"):
        fast_path_enabled()


def test_importing_patches_nothing(tiny_blip_dir):
    """The fast path is applied by `generate` inside a block, never by importing or loading."""
    cap = BlipCaptioner.load(tiny_blip_dir)
    assert not any("forward" in m.__dict__ for m in cap.model.modules())


def test_internals_check_leaves_the_global_rng_alone():
    blip_module._problems.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert transformers_internals_problems() == []
    assert torch.equal(torch.rand(3), expected)
