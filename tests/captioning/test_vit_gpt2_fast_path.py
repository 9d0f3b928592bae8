"""VitGpt2Captioner.generate's fast path (GPT-2 cross-attention on each image's tokens, beams sharing them) gives
plain `generate`'s token ids; it can be switched off; and it notices when transformers changes what it patches."""

import importlib
import inspect

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import vlgen.captioning.vit_gpt2_fast as fast_module
from vlgen.captioning.registry import load_captioner
from vlgen.captioning.vit_gpt2 import VitGpt2Captioner
from vlgen.captioning.vit_gpt2_fast import (
    ENV_VAR,
    INTERNALS,
    fast_generation,
    fast_path_enabled,
    internals_message,
    transformers_internals_problems,
)
from vlgen.errors import ConfigError


def _images(n: int = 5) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 40, 3), dtype=np.uint8)) for i in range(n)]


def _pixel_values(cap: VitGpt2Captioner, images) -> torch.Tensor:
    return cap.image_processor(images=images, return_tensors="pt").pixel_values  # (B, 3, 32, 32)


def _generate(cap: VitGpt2Captioner, pixel_values: torch.Tensor, fast: bool, **kw) -> torch.Tensor:
    """Token ids from transformers' `model.generate` alone, or inside vlgen's block."""
    with torch.no_grad():
        if not fast:
            return cap.model.generate(pixel_values=pixel_values, do_sample=False, **kw)
        with fast_generation(cap.model):
            return cap.model.generate(pixel_values=pixel_values, do_sample=False, **kw)


def _patched(model: torch.nn.Module) -> list[str]:
    leftovers = [name for name, m in model.named_modules() if "forward" in m.__dict__]
    return leftovers + (["_expand_inputs_for_generation"] if "_expand_inputs_for_generation" in model.__dict__ else [])


@pytest.fixture
def cap(tiny_vit_gpt2_dir) -> VitGpt2Captioner:
    return VitGpt2Captioner.load(tiny_vit_gpt2_dir)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_token_ids_identical_to_plain_generate(cap, monkeypatch, num_beams):
    """5 different images, every decoding step of every layer through the cross-attention on X."""
    pv = _pixel_values(cap, _images(5))
    n_tokens = 10
    kw = {"num_beams": num_beams, "max_new_tokens": n_tokens, "min_new_tokens": n_tokens}
    on_x, fallback = [], []
    real_cross = fast_module._cross_attention_on_image_tokens

    def counting_cross(self, tokens, weights, *a, **k):
        (on_x if tokens.images_for(k.get("encoder_hidden_states")) is not None else fallback).append(1)
        return real_cross(self, tokens, weights, *a, **k)

    monkeypatch.setattr(fast_module, "_cross_attention_on_image_tokens", counting_cross)
    plain = _generate(cap, pv, fast=False, **kw)
    assert not on_x and not fallback  # the reference ran transformers alone
    fast = _generate(cap, pv, fast=True, **kw)
    assert len(on_x) == cap.model.config.decoder.n_layer * n_tokens and not fallback  # every layer, every step
    assert fast.shape == plain.shape == (5, 1 + n_tokens)
    assert torch.equal(fast, plain)
    assert len({tuple(row) for row in plain.tolist()}) > 1  # different images, different captions
    assert not _patched(cap.model)


def test_cross_attention_on_image_tokens_matches_transformers_projection(cap):
    """The rewritten cross-attention equals transformers' (keys/values projected from the expanded X) for 1 and 3
    beams and 1 and 3 query tokens, with non-zero biases (the key bias must cancel, the value bias must not)."""
    block = cap.model.decoder.transformer.h[0]
    attn = block.crossattention
    torch.manual_seed(0)
    with torch.no_grad():
        for p in (attn.q_attn.bias, attn.c_attn.bias, attn.c_proj.bias):
            p.normal_()
        images = torch.randn(2, 9, attn.embed_dim)  # (B, N, C)
        for beams in (1, 3):
            x = images.repeat_interleave(beams, dim=0)  # (B*k, N, C), as generate expands it
            for tgt_len in (1, 3):
                h = torch.randn(2 * beams, tgt_len, attn.embed_dim)
                ref, _ = attn(h, encoder_hidden_states=x)
                with fast_generation(cap.model):
                    assert "forward" in attn.__dict__
                    tokens = attn.forward.args[1]
                    tokens.pair = (x, images)  # what the wrapped expansion records
                    got, _ = attn(h, encoder_hidden_states=x)
                    unseen, _ = attn(h, encoder_hidden_states=x.clone())  # states it did not see: transformers'
                torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(unseen, ref, rtol=0, atol=0)
    assert not _patched(cap.model)


def test_patches_are_gone_after_the_block_even_on_error(cap):
    assert not _patched(cap.model)
    with pytest.raises(RuntimeError, match="inside"), fast_generation(cap.model):
        assert "_expand_inputs_for_generation" in _patched(cap.model)
        with fast_generation(cap.model):  # nested: the inner block patches nothing and restores nothing
            pass
        assert len(_patched(cap.model)) == 1 + cap.model.config.decoder.n_layer
        raise RuntimeError("inside")
    assert not _patched(cap.model)


def test_generate_restores_training_mode_and_leaves_no_patch(cap):
    cap.model.train()
    cap.generate(_images(1), max_new_tokens=4)
    assert cap.model.training
    assert not _patched(cap.model)


def test_vit_attention_already_uses_sdpa(cap):
    """Why the fast path leaves ViT's self-attention alone: transformers runs it through SDPA already."""
    assert cap.model.encoder.config._attn_implementation == "sdpa"


def test_transformers_internals_the_fast_path_patches_are_unchanged():
    """Fails loudly on a transformers upgrade that moves what vit_gpt2_fast.py patches (names, signatures,
    attributes, or results on tiny modules). Then: adapt vit_gpt2_fast.py, or ship with VLGEN_VIT_GPT2_FAST_PATH=0."""
    problems = transformers_internals_problems()
    assert not problems, internals_message(problems)
    for module_name, wanted in INTERNALS.items():  # the exact private names, spelled out once more
        module = importlib.import_module(module_name)
        for cls_name, (method, params, _) in wanted.items():
            names = inspect.signature(getattr(getattr(module, cls_name), method)).parameters
            assert set(params) <= set(names), f"transformers {transformers.__version__}: {cls_name}.{method}"


def _gpt2_module():
    return importlib.import_module("transformers.models.gpt2.modeling_gpt2")


def _generation_mixin():
    return importlib.import_module("transformers.generation.utils").GenerationMixin


@pytest.mark.parametrize(
    ("owner", "name", "expected"),
    [
        (_gpt2_module, "GPT2Block", "transformers.models.gpt2.modeling_gpt2.GPT2Block is missing"),
        (_generation_mixin, "_expand_inputs_for_generation", "Mixin._expand_inputs_for_generation is missing"),
    ],
)
def test_internals_check_names_what_is_missing_and_falls_back(monkeypatch, owner, name, expected):
    monkeypatch.delattr(owner(), name)
    fast_module._problems.cache_clear()
    try:
        problems = transformers_internals_problems()
        assert problems and expected in problems[0]
        assert f"transformers {transformers.__version__} changed" in internals_message(problems)
        with pytest.warns(RuntimeWarning, match=f"transformers {transformers.__version__}.*{ENV_VAR}=0"):
            assert not fast_module.fast_path_usable(True)  # falls back to plain transformers
    finally:
        monkeypatch.undo()
        fast_module._problems.cache_clear()
    assert not transformers_internals_problems()


def test_internals_check_notices_a_changed_cross_attention(monkeypatch):
    """A forward that computes something else (here: no key/value bias) is caught on the tiny modules."""
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

    real = GPT2Attention.forward

    def forward_without_bias(self, hidden_states, cache=None, attention_mask=None, encoder_hidden_states=None,
                             encoder_attention_mask=None, **kw):  # fmt: skip
        with torch.no_grad():
            saved = self.c_attn.bias.clone()
            self.c_attn.bias.zero_()
            try:
                return real(self, hidden_states, cache=cache, attention_mask=attention_mask,
                            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
                            **kw)  # fmt: skip
            finally:
                self.c_attn.bias.copy_(saved)

    monkeypatch.setattr(GPT2Attention, "forward", forward_without_bias)
    fast_module._problems.cache_clear()
    try:
        problems = transformers_internals_problems()
        assert problems and "cross-attention on X" in problems[0]
    finally:
        monkeypatch.undo()
        fast_module._problems.cache_clear()


def test_fast_path_on_and_off_give_the_same_captions(tiny_vit_gpt2_dir, monkeypatch):
    images = _images(5)
    on, off = VitGpt2Captioner.load(tiny_vit_gpt2_dir), load_captioner(tiny_vit_gpt2_dir, fast_path=False)
    assert on.fast_path and not off.fast_path
    entered = []
    real = fast_module.fast_generation
    monkeypatch.setattr("vlgen.captioning.vit_gpt2.fast_generation", lambda model: entered.append(1) or real(model))
    for kw in ({"num_beams": 1, "max_new_tokens": 10}, {"num_beams": 3, "max_new_tokens": 6}):
        assert off.generate(images, min_new_tokens=kw["max_new_tokens"], **kw) == on.generate(
            images, min_new_tokens=kw["max_new_tokens"], **kw
        )
    assert len(entered) == 2  # only the captioner with the fast path entered it


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("off", False), ("1", True), ("", True)])
def test_environment_variable_switches_the_fast_path(tiny_vit_gpt2_dir, monkeypatch, value, expected):
    monkeypatch.setenv(ENV_VAR, value)
    assert fast_path_enabled() is expected
    assert load_captioner(tiny_vit_gpt2_dir).fast_path is expected
    assert load_captioner(tiny_vit_gpt2_dir, fast_path=True).fast_path  # the argument wins over the environment


def test_environment_variable_off_runs_plain_transformers(tiny_vit_gpt2_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "0")
    cap = VitGpt2Captioner.load(tiny_vit_gpt2_dir)
    entered = []
    monkeypatch.setattr("vlgen.captioning.vit_gpt2.fast_generation", lambda model: entered.append(1))
    cap.generate(_images(2), max_new_tokens=4)
    assert not entered


def test_bad_environment_value_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ConfigError, match=f"{ENV_VAR}='maybe': expected 1 or 0"):
        fast_path_enabled()


def test_loading_patches_nothing(cap):
    """The fast path is applied by `generate` inside a block, never by importing or loading."""
    assert not _patched(cap.model)


def test_internals_check_leaves_the_global_rng_alone():
    fast_module._problems.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert transformers_internals_problems() == []
    assert torch.equal(torch.rand(3), expected)
