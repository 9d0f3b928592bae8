"""Tiny FLUX.1 (dev and schnell): the pipeline directories load like the real ones, encode prompts with both text
encoders, and generate 64 px images with a short T5 sequence."""

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from transformers import T5TokenizerFast

from vlgen.hub import resolve_model
from vlgen.testing.flux import FLUX_SCALING_FACTOR, FLUX_SHIFT_FACTOR, t5_tokenizer, tiny_flux_pipeline
from vlgen.testing.published import published_config

MAX_SEQ = 16  # FluxPipeline's max_sequence_length (FLUX.1-dev: 512); any length up to 512 works for T5


def _generate(pipe: FluxPipeline, **kwargs) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(0)
    return pipe(
        "a red circle", height=64, width=64, num_inference_steps=2, max_sequence_length=MAX_SEQ,
        generator=generator, output_type="np", **kwargs,
    ).images  # fmt: skip


@pytest.fixture(scope="module")
def loaded(tiny_flux_dir) -> FluxPipeline:
    return FluxPipeline.from_pretrained(resolve_model(tiny_flux_dir, what="Flux pipeline").path)


def test_components_fit_together_like_flux_dev(loaded):
    tr, vae = loaded.transformer.config, loaded.vae.config
    te1, te2 = loaded.text_encoder.config, loaded.text_encoder_2.config
    assert tr.in_channels == 4 * vae.latent_channels == 64  # 16 latent channels packed 2x2
    assert tr.joint_attention_dim == te2.d_model  # T5's last hidden states are the text tokens
    assert tr.pooled_projection_dim == te1.hidden_size  # CLIP's pooled output, not its projection
    assert sum(tr.axes_dims_rope) == tr.attention_head_dim
    assert tr.guidance_embeds is True and loaded.transformer.time_text_embed.guidance_embedder is not None
    assert loaded.vae_scale_factor == 8
    assert (vae.use_quant_conv, vae.use_post_quant_conv) == (False, False)
    assert loaded.vae.quant_conv is None and loaded.vae.post_quant_conv is None
    assert (vae.scaling_factor, vae.shift_factor) == (FLUX_SCALING_FACTOR, FLUX_SHIFT_FACTOR)
    assert te1.hidden_act == "quick_gelu" and te2.feed_forward_proj == "gated-gelu" and te2.is_gated_act
    assert type(loaded.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    published = {k: v for k, v in published_config("flux-dev/scheduler").items() if not k.startswith("_")}
    assert {k: loaded.scheduler.config[k] for k in published} == published  # shift 3, dynamic 0.5-1.15
    tok2 = loaded.tokenizer_2
    assert isinstance(tok2, T5TokenizerFast) and tok2.model_max_length == 512
    assert (tok2.pad_token_id, tok2.eos_token_id, tok2.unk_token_id) == (0, 1, 2)
    assert len(tok2) <= te2.vocab_size and te2.vocab_size % 64 == 0
    assert len(loaded.tokenizer) == te1.vocab_size and loaded.tokenizer.model_max_length == 77


def test_encode_prompt_gives_flux_shapes(loaded):
    prompt_embeds, pooled, text_ids = loaded.encode_prompt("a red circle", None, max_sequence_length=MAX_SEQ)
    assert prompt_embeds.shape == (1, MAX_SEQ, 32) and pooled.shape == (1, 32) and text_ids.shape == (MAX_SEQ, 3)
    latents = torch.randn(1, 16, 8, 8)  # a 64 px image
    packed = loaded._pack_latents(latents, 1, 16, 8, 8)
    assert packed.shape == (1, 16, 64)  # 4x4 tokens of 16 x 2 x 2
    torch.testing.assert_close(loaded._unpack_latents(packed, 64, 64, loaded.vae_scale_factor), latents)


def test_loaded_pipeline_generates_the_in_memory_image(loaded):
    image = _generate(loaded)
    assert image.shape == (1, 64, 64, 3)
    assert np.isfinite(image).all() and image.std() > 0
    np.testing.assert_allclose(image, _generate(tiny_flux_pipeline(seed=0)), rtol=0, atol=1e-3)
    assert np.abs(image - _generate(tiny_flux_pipeline(seed=1))).max() > 0.01
    assert not np.array_equal(image, _generate(loaded, guidance_scale=1.0))  # guidance is a model input


def test_schnell_has_no_guidance_embedder_and_a_static_shift(tiny_flux_schnell_dir):
    pipe = FluxPipeline.from_pretrained(tiny_flux_schnell_dir)
    assert pipe.transformer.config.guidance_embeds is False
    assert not hasattr(pipe.transformer.time_text_embed, "guidance_embedder")
    assert (pipe.scheduler.config.shift, pipe.scheduler.config.use_dynamic_shifting) == (1.0, False)
    image = _generate(pipe)
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()
    np.testing.assert_array_equal(pipe.scheduler.sigmas.numpy(), np.array([1.0, 0.5, 0.0], dtype=np.float32))


def test_t5_tokenizer_round_trips_like_t5(tmp_path):
    tok = t5_tokenizer()
    tok.save_pretrained(tmp_path)
    again = T5TokenizerFast.from_pretrained(tmp_path)
    text = "A red circle, on the grass!"
    assert again(text).input_ids == tok(text).input_ids
    ids = tok("a red circle").input_ids
    assert ids[-1] == 1 and 2 not in ids  # </s> appended; every word known
    assert tok.convert_ids_to_tokens(ids[:-1]) == ["\u2581a", "\u2581red", "\u2581circle"]
    assert tok.decode(ids, skip_special_tokens=True) == "a red circle"
    assert 2 not in tok(text).input_ids  # upper case and punctuation fall back to characters, not <unk>
    accented = tok.convert_ids_to_tokens(tok("\u00e9t\u00e9").input_ids)
    assert accented == ["\u2581", "<unk>", "t", "<unk>", "</s>"]  # outside the vocabulary: <unk>, id 2
    padded = tok(["a red circle"], padding="max_length", max_length=8, truncation=True).input_ids[0]
    assert padded == ids + [0] * (8 - len(ids))
    assert tok.convert_ids_to_tokens(len(tok) - 1) == "<extra_id_0>"  # sentinels last, as in T5


def test_guidance_embeds_false_is_the_schnell_build(tiny_flux_schnell_dir, tmp_path):
    from vlgen.testing import build_tiny, file_digests

    schnell = build_tiny("flux", tmp_path / "s", guidance_embeds=False)
    assert file_digests(schnell) == file_digests(tiny_flux_schnell_dir)  # marker included: name "flux-schnell"
