"""Florence-2's fast path (vlgen.captioning.florence_fast: the DaViT vision tower computed by vlgen on CPU inside
`generate`) gives plain transformers' captions and tower outputs; it can be switched off; it leaves nothing patched;
and it notices when transformers changes what it relies on."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import vlgen.captioning.florence_fast as florence_module
from vlgen.captioning.florence_fast import (
    ENV_VAR,
    INTERNALS,
    TILE_BYTES,
    davit_forward,
    fast_generation,
    fast_path_enabled,
    internals_message,
    transformers_internals_problems,
)
from vlgen.captioning.registry import load_captioner
from vlgen.errors import ConfigError


def _images(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (30 + 9 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


def _plain_captions(cap, images, **kw) -> list[str]:
    """What a user of transformers alone would write: processor + model.generate + batch_decode (no vlgen block)."""
    inputs = cap.processor(images=images, text=[cap.prompt] * len(images), return_tensors="pt")
    with torch.no_grad():
        ids = cap.model.generate(**inputs, do_sample=False, **kw)
    return [" ".join(t.split()) for t in cap.processor.batch_decode(ids[:, 1:], skip_special_tokens=True)]


def _tower_config(**kw):
    """Two stages whose maps need window padding for a 40 x 36 input (10 x 9 and 5 x 5 for window 2)."""
    base = dict(
        depths=[1, 2],
        embed_dim=[8, 16],
        num_heads=[2, 2],
        num_groups=[2, 4],
        patch_size=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[3, 1],
        patch_prenorm=[False, True],
        window_size=2,
        drop_path_rate=0.0,
    )
    return transformers.Florence2VisionConfig(**{**base, **kw})


def _random_tower(config):
    from transformers.models.florence2.modeling_florence2 import Florence2VisionBackbone

    tower = Florence2VisionBackbone(config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in tower.parameters():  # random biases and norm weights too
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return tower


@pytest.fixture(scope="module")
def florence(florence_dir):
    return load_captioner(florence_dir)


def _no_patch_left(model) -> bool:
    return not any("forward" in m.__dict__ for m in model.modules())


def test_greedy_and_beam_captions_identical_to_plain_generate(florence, monkeypatch):
    assert florence.fast_path
    calls = []
    real = florence_module.davit_forward
    monkeypatch.setattr(florence_module, "davit_forward", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    images = _images()
    for kw in ({"num_beams": 1, "max_new_tokens": 12}, {"num_beams": 3, "max_new_tokens": 8}):
        fast = florence.generate(images, min_new_tokens=kw["max_new_tokens"], **kw)
        assert calls == [len(images)]  # the batch's tower ran through vlgen's forward, once
        calls.clear()
        assert fast == _plain_captions(florence, images, min_new_tokens=kw["max_new_tokens"], **kw)
        assert not calls  # and plain generate did not
    assert _no_patch_left(florence.model)


def test_generate_logits_equal_plain_transformers(florence):
    """Stronger than equal captions: every step's logits agree to fp32 rounding."""
    inputs = florence.processor(images=_images(3), text=[florence.prompt] * 3, return_tensors="pt")
    kw = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "output_scores": True}
    with torch.no_grad():
        plain = florence.model.generate(**inputs, **kw, return_dict_in_generate=True)
        with fast_generation(florence.model):
            fast = florence.model.generate(**inputs, **kw, return_dict_in_generate=True)
    assert torch.equal(plain.sequences, fast.sequences)
    a, b = torch.stack(plain.scores), torch.stack(fast.scores)
    finite = torch.isfinite(a)
    assert torch.equal(finite, torch.isfinite(b))
    torch.testing.assert_close(b[finite], a[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tile_bytes", [TILE_BYTES, 12000, 6000, 4096, 1])  # all images at once ... one row per tile
@pytest.mark.parametrize(("qkv_bias", "activation"), [(True, "gelu"), (False, "silu")])
def test_davit_forward_equals_the_tower_with_padded_windows_and_tiles(tile_bytes, qkv_bias, activation):
    tower = _random_tower(_tower_config(qkv_bias=qkv_bias, activation_function=activation))
    pv = torch.randn(3, 3, 40, 36, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tower(pv).last_hidden_state  # (3, 16, 5, 5)
        got = davit_forward(tower, pv, tile_bytes)
    assert got.shape == ref.shape == (3, 16, 5, 5)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_block_patches_only_the_tower_and_removes_it_nested_too(florence):
    tower = florence.model.model.vision_tower
    pv = florence.processor.image_processor(images=_images(2), return_tensors="pt").pixel_values
    with torch.no_grad():
        ref = tower(pv).last_hidden_state
        with fast_generation(florence.model):
            patched = tower.__dict__["forward"]
            with fast_generation(florence.model):  # nested: patches nothing, removes nothing
                assert tower.__dict__["forward"] is patched
            assert tower.__dict__["forward"] is patched
            got = tower(pv).last_hidden_state
            assert [m for m in florence.model.modules() if "forward" in m.__dict__] == [tower]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert _no_patch_left(florence.model)


def test_block_is_left_on_error_and_generate_restores_training_mode(florence):
    with pytest.raises(RuntimeError, match="boom"), fast_generation(florence.model):
        raise RuntimeError("boom")
    assert _no_patch_left(florence.model)
    florence.model.train()
    try:
        florence.generate(_images(1), max_new_tokens=3)
        assert florence.model.training
    finally:
        florence.model.eval()
    assert _no_patch_left(florence.model)


@pytest.mark.parametrize("case", ["grad", "training", "hidden_states"])
def test_transformers_forward_runs_where_the_fast_one_does_not_apply(florence, monkeypatch, case):
    calls = []
    monkeypatch.setattr(florence_module, "davit_forward", lambda *a, **k: calls.append(1))
    tower = florence.model.model.vision_tower
    pv = florence.processor.image_processor(images=_images(1), return_tensors="pt").pixel_values
    kwargs = {"output_hidden_states": True} if case == "hidden_states" else {}
    with fast_generation(florence.model), torch.set_grad_enabled(case == "grad"):
        if case == "training":
            tower.train()
        try:
            out = tower(pv, **kwargs)
        finally:
            tower.eval()
    assert not calls and out.last_hidden_state.shape[0] == 1
    if case == "hidden_states":
        assert out.hidden_states is not None


def test_reduced_precision_keeps_transformers_forward(monkeypatch):
    calls = []
    monkeypatch.setattr(florence_module, "davit_forward", lambda *a, **k: calls.append(1))
    holder = torch.nn.Module()  # a Florence2Model-like parent: fast_generation finds `.vision_tower`
    holder.vision_tower = _random_tower(_tower_config()).to(torch.bfloat16)
    with torch.no_grad(), fast_generation(holder):
        out = holder.vision_tower(torch.randn(1, 3, 40, 36, dtype=torch.bfloat16))
    assert not calls and out.last_hidden_state.dtype == torch.bfloat16
    assert _no_patch_left(holder)


def test_transformers_internals_the_fast_path_relies_on_are_unchanged():
    """Fails loudly on a transformers upgrade that moves what florence_fast.py relies on (names, signatures,
    attributes, or its output on a tiny tower). Then: adapt florence_fast.py, or ship with
    VLGEN_FLORENCE_FAST_PATH=0 meanwhile."""
    problems = transformers_internals_problems()
    assert not problems, internals_message(problems)
    from transformers.models.florence2 import modeling_florence2

    for cls_name, (params, _) in INTERNALS.items():  # the exact private names, spelled out once more
        names = inspect.signature(getattr(modeling_florence2, cls_name).forward).parameters
        assert set(params) <= set(names), f"transformers {transformers.__version__}: {cls_name} {list(names)}"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("missing", "transformers.models.florence2.modeling_florence2.Florence2VisionChannelAttention is missing"),
        ("signature", "Florence2VisionBackbone.forward(self, pixel_values, kwargs) has no hidden_states"),
        ("attribute", "Florence2VisionWindowAttention instances have no window_size"),
    ],
)
def test_internals_check_names_the_change_and_falls_back(florence_dir, monkeypatch, change, expected):
    from transformers.models.florence2 import modeling_florence2

    if change == "missing":
        monkeypatch.delattr(modeling_florence2, "Florence2VisionChannelAttention")
    elif change == "signature":
        monkeypatch.setattr(
            modeling_florence2.Florence2VisionBackbone, "forward", lambda self, pixel_values, **kwargs: 0
        )
    else:
        real_init = modeling_florence2.Florence2VisionWindowAttention.__init__

        def init_without_window_size(self, *a, **k):  # what a refactor might do: the size moves to the config
            real_init(self, *a, **k)
            del self.window_size

        monkeypatch.setattr(modeling_florence2.Florence2VisionWindowAttention, "__init__", init_without_window_size)
    florence_module._problems.cache_clear()
    try:
        problems = transformers_internals_problems()
        assert any(expected in p for p in problems), problems
        assert f"transformers {transformers.__version__} changed the Florence-2 internals" in internals_message(
            problems
        )
        warning = f"transformers {transformers.__version__}.*{ENV_VAR}=0"
        with pytest.warns(RuntimeWarning, match=warning):
            assert not florence_module.fast_path_usable(True)
        if change != "missing":  # (without the class the model itself cannot be built)
            with pytest.warns(RuntimeWarning, match=warning):
                captioner = load_captioner(florence_dir)
            assert not captioner.fast_path  # plain transformers, with the warning
    finally:
        monkeypatch.undo()
        florence_module._problems.cache_clear()
    assert not transformers_internals_problems()


def test_fast_path_on_and_off_give_the_same_captions(florence_dir, monkeypatch):
    on, off = load_captioner(florence_dir), load_captioner(florence_dir, fast_path=False)
    assert on.fast_path and not off.fast_path
    entered = []
    real = florence_module.fast_generation
    monkeypatch.setattr(florence_module, "fast_generation", lambda model: entered.append(1) or real(model))
    images = _images(3)
    for kw in ({"num_beams": 1, "max_new_tokens": 10}, {"num_beams": 3, "max_new_tokens": 6}):
        m = kw["max_new_tokens"]
        assert off.generate(images, min_new_tokens=m, **kw) == on.generate(images, min_new_tokens=m, **kw)
    assert len(entered) == 2  # only the captioner with the fast path entered it


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("off", False), ("1", True), ("", True)])
def test_environment_variable_switches_the_fast_path(florence_dir, monkeypatch, value, expected):
    monkeypatch.setenv(ENV_VAR, value)
    assert fast_path_enabled() is expected
    assert load_captioner(florence_dir).fast_path is expected
    assert load_captioner(florence_dir, fast_path=True).fast_path  # the argument wins over the environment


def test_bad_environment_value_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ConfigError, match=f"{ENV_VAR}='maybe': expected 1 or 0"):
        fast_path_enabled()


def test_other_vision_language_models_have_no_fast_path(qwen_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "maybe")  # not even read for them
    assert load_captioner(qwen_dir).fast_path is False


def test_loading_patches_nothing(florence):
    assert _no_patch_left(florence.model)


def test_internals_check_leaves_the_global_rng_alone():
    florence_module._problems.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert transformers_internals_problems() == []
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_published_florence_2_base_tower_and_logits_equal_transformers():
    """At Florence-2-base's real shapes (768 px: 192 x 192 first map, 12 x 12 windows, stage groups of 1 / 2 / 5 /
    10 images): the fast tower equals transformers', and so do generate's tokens and logits."""
    from vlgen.testing.florence2 import florence2_processor
    from vlgen.testing.published import published_model

    torch.manual_seed(0)
    model = published_model("florence-2-base", device="cpu")
    processor = florence2_processor(image_size=768, vocab_size=model.config.text_config.vocab_size)
    model.config.image_token_id = processor.tokenizer.image_token_id
    images = _images(3)
    inputs = processor(images=images, text=["<CAPTION>"] * 3, return_tensors="pt")
    tower = model.model.vision_tower
    with torch.no_grad():
        ref = tower(inputs["pixel_values"]).last_hidden_state  # (3, 1024, 24, 24)
        got = davit_forward(tower, inputs["pixel_values"])
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    kw = {"max_new_tokens": 3, "min_new_tokens": 3, "do_sample": False, "output_scores": True}
    with torch.no_grad():
        plain = model.generate(**inputs, **kw, return_dict_in_generate=True)
        with fast_generation(model):
            fast = model.generate(**inputs, **kw, return_dict_in_generate=True)
    assert torch.equal(plain.sequences, fast.sequences)
    a, b = torch.stack(plain.scores), torch.stack(fast.scores)
    finite = torch.isfinite(a)
    torch.testing.assert_close(b[finite], a[finite], rtol=1e-4, atol=1e-4)
