"""A FLUX.1-dev single file (Black Forest Labs' layout, as `flux1-dev.safetensors`) converted for real: the tiny Flux
transformer written in BFL's keys (tests/t2i/bfl_flux.py), then `resolve_single_file` -> a diffusers folder whose
transformer equals the original tensor for tensor, converted once and then read from the cache.

diffusers' converter (`convert_flux_transformer_checkpoint_to_diffusers`) assumes FLUX.1's width: it splits each
single block's `linear1` at 3072 (q, k, v) and 12288 (mlp), whatever the file's width. The tiny model is 32 wide, so
these tests run the converter with that one split scaled to the file's width (`_any_width`); the split's hard-coded
width is checked on its own (test_diffusers_flux_converter_assumes_flux1_width), so the shim goes when diffusers
reads the width from the file."""

from __future__ import annotations

import json

import pytest
import torch
from bfl_flux import flux_transformer_to_bfl
from diffusers import FluxTransformer2DModel
from diffusers.loaders import single_file_utils
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
from safetensors.torch import load_file, save_file

from vlgen.t2i.families import single_file
from vlgen.t2i.families.single_file import resolve_single_file, single_file_model_type

FLUX1_SINGLE_SPLIT = [3072, 3072, 3072, 12288]  # q, k, v, mlp of FLUX.1's linear1 (inner 3072, mlp ratio 4)


class _AnyWidthTorch:
    """torch, as diffusers' single_file_utils sees it, with FLUX.1's linear1 split scaled to the tensor's width."""

    @staticmethod
    def split(tensor, split_size_or_sections, dim=0):
        if list(split_size_or_sections) == FLUX1_SINGLE_SPLIT and tensor.shape[dim] != sum(FLUX1_SINGLE_SPLIT):
            inner = tensor.shape[dim] // 7
            split_size_or_sections = [inner, inner, inner, 4 * inner]
        return torch.split(tensor, split_size_or_sections, dim=dim)

    def __getattr__(self, name):
        return getattr(torch, name)


@pytest.fixture
def _any_width(monkeypatch):
    monkeypatch.setattr(single_file_utils, "torch", _AnyWidthTorch())


@pytest.fixture(scope="module")
def tiny_transformer(tiny_flux_dir):
    return FluxTransformer2DModel.from_pretrained(tiny_flux_dir, subfolder="transformer")


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_equal_states(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k].dtype != want[k].dtype or not torch.equal(got[k], want[k])]
    assert not differ, f"tensors changed by the round trip: {differ}"


def test_bfl_layout_is_flux_dev_and_diffusers_converts_it_back(tiny_transformer, _any_width):
    """The test helper is BFL's layout by diffusers' own reading: detected as flux-dev, converted back exactly."""
    want = _state(tiny_transformer)
    bfl = flux_transformer_to_bfl(want)
    assert "double_blocks.0.img_attn.qkv.weight" in bfl and "single_blocks.1.linear1.weight" in bfl
    assert single_file_utils.infer_diffusers_model_type(bfl) == "flux-dev"
    _assert_equal_states(convert_flux_transformer_checkpoint_to_diffusers(dict(bfl)), want)


def test_diffusers_flux_converter_assumes_flux1_width(tiny_transformer):
    """Without the shim the converter cannot read a file of another width than FLUX.1's 3072 (none of BFL's FLUX.1
    files is one). When this fails, diffusers reads the width from the file: drop `_any_width`."""
    bfl = flux_transformer_to_bfl(_state(tiny_transformer))
    with pytest.raises(RuntimeError, match=r"split_sizes=\[3072, 3072, 3072, 12288\]"):
        convert_flux_transformer_checkpoint_to_diffusers(bfl)


def test_flux_dev_single_file_converts_exactly_and_once(
    tiny_flux_dir, tiny_transformer, tmp_path, monkeypatch, _any_width
):
    monkeypatch.setenv("VLGEN_SINGLE_FILE_CACHE", str(tmp_path / "cache"))
    want = _state(tiny_transformer)
    path = tmp_path / "flux1-dev.safetensors"
    save_file(flux_transformer_to_bfl(want), str(path))
    assert single_file_model_type(path) == "flux-dev"

    out = resolve_single_file(path, config=str(tiny_flux_dir))
    assert out.parent == tmp_path / "cache" and out.name.startswith("flux1-dev-")
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "FluxPipeline"
    converted = FluxTransformer2DModel.from_pretrained(out, subfolder="transformer")
    _assert_equal_states(_state(converted), want)

    def public(config) -> dict:
        return {k: v for k, v in dict(config).items() if not k.startswith("_")}

    assert public(converted.config) == public(tiny_transformer.config)
    # what the file lacks (text encoders, VAE) comes unchanged from the configs folder
    for part in ("text_encoder", "text_encoder_2", "vae"):
        (got,) = (out / part).glob("*.safetensors")
        (want_file,) = (tiny_flux_dir / part).glob("*.safetensors")
        _assert_equal_states(load_file(got), load_file(want_file))

    # a second call: the cached folder, nothing converted again
    stamp = (out / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(single_file, "single_file_family", no_second_conversion)
    monkeypatch.setattr(FluxTransformer2DModel, "from_single_file", no_second_conversion)
    assert resolve_single_file(path, config=str(tiny_flux_dir)) == out
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
