"""Tiny SD 1.5: the pipeline directory loads like the real one (no safety checker) and generates."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from vlgen.hub import resolve_model
from vlgen.testing.published import published_config
from vlgen.testing.sd15 import SD15_SCALING_FACTOR, tiny_sd15_pipeline


def _generate(pipe: StableDiffusionPipeline) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(0)
    return pipe("a red circle", num_inference_steps=2, generator=generator, output_type="np").images


@pytest.fixture(scope="module")
def loaded(tiny_sd15_dir) -> StableDiffusionPipeline:
    return StableDiffusionPipeline.from_pretrained(resolve_model(tiny_sd15_dir, what="SD 1.5 pipeline").path)


def test_components_fit_together_like_sd15(loaded):
    unet, te = loaded.unet.config, loaded.text_encoder.config
    assert unet.addition_embed_type is None and unet.cross_attention_dim == te.hidden_size  # last hidden states only
    assert (unet.in_channels, unet.out_channels) == (4, 4)
    # SD 1.5's layout: attention on the higher-resolution levels, a plain block at the lowest.
    assert list(unet.down_block_types) == ["CrossAttnDownBlock2D", "DownBlock2D"]
    assert list(unet.up_block_types) == ["UpBlock2D", "CrossAttnUpBlock2D"]
    assert te.hidden_act == "quick_gelu"
    assert loaded.vae_scale_factor == 8 and loaded.vae.config.latent_channels == 4
    assert loaded.vae.config.scaling_factor == SD15_SCALING_FACTOR
    assert type(loaded.scheduler).__name__ == "PNDMScheduler"
    sched = {k: v for k, v in loaded.scheduler.config.items() if not k.startswith("_")}
    published = {k: v for k, v in published_config("sd15/scheduler").items() if not k.startswith("_")}
    assert {k: sched[k] for k in published} == published  # steps_offset 1, skip_prk_steps, scaled_linear...
    assert sched["prediction_type"] == "epsilon"
    assert loaded.safety_checker is None and loaded.feature_extractor is None
    assert loaded.config.requires_safety_checker is False
    assert len(loaded.tokenizer) == te.vocab_size and loaded.tokenizer.model_max_length == 77
    assert loaded.tokenizer.pad_token == "<|endoftext|>"


def test_loaded_pipeline_generates_the_in_memory_image(loaded):
    image = _generate(loaded)
    assert image.shape == (1, 64, 64, 3)  # default size = unet.sample_size (8) x vae_scale_factor (8)
    assert np.isfinite(image).all() and image.std() > 0
    np.testing.assert_allclose(image, _generate(tiny_sd15_pipeline(seed=0)), rtol=0, atol=1e-3)
    assert np.abs(image - _generate(tiny_sd15_pipeline(seed=1))).max() > 0.01


def test_a_training_step_sees_sd15_shapes(loaded):
    """What a LoRA step sees: a 64 px image is 8x8x4 latents, prompt embeds (B, 77, 32); gradients reach the UNet."""
    with torch.no_grad():
        ids = loaded.tokenizer(["a red circle"] * 2, padding="max_length", max_length=77, return_tensors="pt")
        embeds = loaded.text_encoder(ids.input_ids)[0]
        latents = loaded.vae.encode(torch.zeros(2, 3, 64, 64)).latent_dist.mode() * loaded.vae.config.scaling_factor
    assert embeds.shape == (2, 77, 32) and latents.shape == (2, 4, 8, 8)
    unet = tiny_sd15_pipeline(seed=0).unet.train()
    pred = unet(torch.randn_like(latents), torch.tensor([10, 900]), encoder_hidden_states=embeds).sample
    pred.pow(2).mean().backward()
    assert pred.shape == latents.shape
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight.grad is not None  # cross-attn
