"""Single-file bases (`--base model.safetensors`): which family a downloaded checkpoint is, read from its keys with
diffusers' own detector, and the one-line errors for files vlgen cannot train. The detector is diffusers' (its
`infer_diffusers_model_type`, whose key table may change between releases): these tests fail loudly when it does."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vlgen.errors import ConfigError
from vlgen.t2i.families import family_hint
from vlgen.t2i.families.single_file import converted_dir, is_single_file, single_file_family

FLUX = {"double_blocks.0.img_attn.norm.key_norm.scale": (4,), "img_in.weight": (8, 64)}
CASES = {
    "sd15": ({"model.diffusion_model.output_blocks.11.0.skip_connection.weight": (4, 8, 1, 1)}, "sd15",
             "stable-diffusion-v1-5/stable-diffusion-v1-5"),
    "sdxl": ({"conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (8,)}, "sdxl",
             "stabilityai/stable-diffusion-xl-base-1.0"),
    "flux-dev": ({**FLUX, "guidance_in.in_layer.bias": (8,)}, "flux", "black-forest-labs/FLUX.1-dev"),
    "flux-schnell": (FLUX, "flux", "black-forest-labs/FLUX.1-schnell"),
}  # fmt: skip


def _write(path, shapes: dict) -> None:
    save_file({k: torch.zeros(shape) for k, shape in shapes.items()}, str(path))


@pytest.mark.parametrize("name", list(CASES))
def test_single_file_family_is_read_from_its_keys(name, tmp_path):
    shapes, family, repo = CASES[name]
    path = tmp_path / f"{name}.safetensors"
    _write(path, shapes)
    assert is_single_file(path) and not is_single_file(tmp_path)
    fam, config_repo = single_file_family(path)
    assert (fam.name, config_repo) == (family, repo)
    assert family_hint(str(path)).name == family  # check_config knows it before anything loads


def test_unknown_and_unreadable_single_files_fail_in_one_line(tmp_path):
    unknown = tmp_path / "lora.safetensors"
    _write(unknown, {"lora_unet_down_blocks_0.lora_down.weight": (4, 8)})
    with pytest.raises(ConfigError, match="not a checkpoint vlgen recognises"):
        single_file_family(unknown)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        single_file_family(broken)


def test_converted_folder_is_cached_per_file_version(tmp_path, monkeypatch):
    monkeypatch.setenv("VLGEN_SINGLE_FILE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "model.safetensors"
    _write(path, CASES["sd15"][0])
    first = converted_dir(path)
    assert first.parent == tmp_path / "cache" and first.name.startswith("model-")
    assert converted_dir(path) == first  # the same file: the same folder, converted once
    _write(path, {**CASES["sd15"][0], "extra": (2,)})  # a new version of the file
    assert converted_dir(path) != first
