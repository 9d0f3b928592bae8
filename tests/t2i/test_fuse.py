"""Fusing a LoRA into its base: a plain pipeline directory whose output equals base + LoRA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlgen.errors import ConfigError
from vlgen.t2i.fuse import fuse_lora_into_base


def _image(pipe, seed: int = 0) -> np.ndarray:
    for m in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2, pipe.vae):
        m.eval()
    g = torch.Generator().manual_seed(seed)
    return pipe("a 3D icon in the style of TOK", num_inference_steps=3, generator=g, output_type="np").images


def test_fused_pipeline_equals_base_plus_lora_and_loads_without_peft(
    trained, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path
):
    from vlgen.t2i.generate import apply_lora, load_pipeline

    _, lora_out, *_ = trained
    fused_dir = fuse_lora_into_base(tiny_sdxl_dir, lora_out, tmp_path / "fused", vae=str(tiny_sdxl_vae_dir))
    assert (fused_dir / "model_index.json").is_file()
    fused = load_pipeline(str(fused_dir), str(tiny_sdxl_vae_dir), device="cpu")
    assert not any("lora" in k for k in fused.unet.state_dict())  # a plain UNet: no adapter layers left
    with_lora = load_pipeline(str(tiny_sdxl_dir), str(tiny_sdxl_vae_dir), device="cpu")
    apply_lora(with_lora, lora_out, 1.0)
    base = load_pipeline(str(tiny_sdxl_dir), str(tiny_sdxl_vae_dir), device="cpu")
    np.testing.assert_allclose(_image(fused), _image(with_lora), rtol=0, atol=1e-4)
    assert np.abs(_image(fused) - _image(base)).max() > 1e-3  # the LoRA's effect is in the weights now
    with pytest.raises(ConfigError, match="not empty"):
        fuse_lora_into_base(tiny_sdxl_dir, lora_out, fused_dir)
