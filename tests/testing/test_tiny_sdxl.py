"""Tiny SDXL: the pipeline directory loads like the real one, generates, and takes a separate `vae=`."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline

from vlgen.hub import resolve_model
from vlgen.testing.sdxl import SDXL_SCALING_FACTOR, tiny_sdxl_pipeline


def _generate(pipe: StableDiffusionXLPipeline) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(0)
    return pipe("a red circle", num_inference_steps=2, generator=generator, output_type="np").images


@pytest.fixture(scope="module")
def loaded(tiny_sdxl_dir) -> StableDiffusionXLPipeline:
    return StableDiffusionXLPipeline.from_pretrained(resolve_model(tiny_sdxl_dir, what="SDXL pipeline").path)


def test_components_fit_together_like_sdxl(loaded):
    unet, te1, te2 = loaded.unet.config, loaded.text_encoder.config, loaded.text_encoder_2.config
    assert unet.addition_embed_type == "text_time"
    assert unet.cross_attention_dim == te1.hidden_size + te2.hidden_size  # prompt embeds are concatenated
    # add_embedding input = pooled text embedding + 6 time ids x addition_time_embed_dim
    assert unet.projection_class_embeddings_input_dim == te2.projection_dim + 6 * unet.addition_time_embed_dim
    assert loaded.vae_scale_factor == 8 and loaded.vae.config.latent_channels == 4
    assert loaded.vae.config.scaling_factor == SDXL_SCALING_FACTOR
    sched = loaded.scheduler.config
    assert type(loaded.scheduler).__name__ == "EulerDiscreteScheduler"
    assert (sched.beta_schedule, sched.beta_start, sched.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (sched.steps_offset, sched.timestep_spacing) == (1, "leading")
    for tok, te in ((loaded.tokenizer, te1), (loaded.tokenizer_2, te2)):
        assert len(tok) == te.vocab_size and tok.model_max_length == 77 == te.max_position_embeddings
    assert loaded.tokenizer.pad_token == "<|endoftext|>" and loaded.tokenizer_2.pad_token == "!"
    assert loaded.tokenizer_2.pad_token_id == 0


def test_loaded_pipeline_generates_the_in_memory_image(loaded):
    image = _generate(loaded)
    assert image.shape == (1, 64, 64, 3)  # default size = unet.sample_size (8) x vae_scale_factor (8)
    assert np.isfinite(image).all() and image.std() > 0
    # Same weights, same generator: equal up to float noise (loaded weights live in other memory, so BLAS
    # may take other kernels; last-bit differences grow a little over the denoising steps). Seed 1 differs by ~0.1.
    np.testing.assert_allclose(image, _generate(tiny_sdxl_pipeline(seed=0)), rtol=0, atol=1e-3)
    assert np.abs(image - _generate(tiny_sdxl_pipeline(seed=1))).max() > 0.01


def test_a_separate_vae_can_be_passed_in(tiny_sdxl_dir, tiny_sdxl_vae_dir, loaded):
    vae = AutoencoderKL.from_pretrained(resolve_model(tiny_sdxl_vae_dir, what="VAE").path)
    assert vae.config.force_upcast is False  # like sdxl-vae-fp16-fix
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir, vae=vae)
    assert pipe.vae is vae
    image = _generate(pipe)
    assert image.shape == (1, 64, 64, 3)
    assert not np.array_equal(image, _generate(loaded))  # same latents, other decoder weights
