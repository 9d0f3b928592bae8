"""Tiny FLUX.1: a `FluxPipeline` directory with every component of the real one at toy width, standing in for
black-forest-labs/FLUX.1-dev (`build_tiny_flux`, guidance-distilled) or FLUX.1-schnell (`build_tiny_flux_schnell`).

What is kept from FLUX.1, because the code under test depends on it:
- FluxTransformer2DModel (MM-DiT): double-stream then single-stream blocks (real 19 + 38, here 1 + 2), heads of
  `attention_head_dim` 16 (real 128) split into 3 rotary axes (real 16 + 56 + 56, here 4 + 6 + 6), `in_channels`
  64 = 16 latent channels x a 2x2 patch, because the pipeline packs latents into 2x2 patches;
  `joint_attention_dim` = T5's d_model (32 here, 4096 real), `pooled_projection_dim` = the CLIP text encoder's
  hidden size (32 here, 768 real: FLUX reads CLIP's pooled output only, not its projection);
  dev: `guidance_embeds=True` (guidance is an input of the distilled model, not classifier-free); schnell: False;
- an AutoencoderKL with 4 levels (`vae_scale_factor` 8), 16 latent channels, no quant_conv / post_quant_conv,
  `scaling_factor` 0.3611 and `shift_factor` 0.1159: latents = (mean - 0.1159) * 0.3611;
- FlowMatchEulerDiscreteScheduler from FLUX.1-dev's scheduler_config.json (`configs/flux-dev/scheduler.json`:
  shift 3.0, dynamic shifting between base_shift 0.5 at 256 and max_shift 1.15 at 4096 image tokens);
  schnell: static shift 1.0, no dynamic shifting;
- `text_encoder` a CLIPTextModel (ViT-L/14's: quick_gelu) + CLIP tokenizer (77 tokens, pads with `<|endoftext|>`);
- `text_encoder_2` a T5EncoderModel shaped like T5 v1.1 (gated-gelu feed-forward, relative attention buckets
  32 / distance 128, RMS layer norm eps 1e-6, no tied LM head) + a T5 Unigram tokenizer built here
  (`t5_tokenizer`): `<pad>` 0, `</s>` 1, `<unk>` 2, `</s>` appended, 100 sentinels last, model_max_length 512.

Resolution: FluxPipeline ignores the transformer's size and defaults to `default_sample_size` (128) x
`vae_scale_factor` (8) = 1024 px, so pass `height=64, width=64` to the tiny one: 8x8 latents -> 4x4 = 16 packed
tokens of 64 channels (height and width must be multiples of 16 = vae_scale_factor x the 2x2 patch; 32 px works
too). `max_sequence_length` (default 512, FLUX.1-dev's; schnell is used at 256) may be anything from 1 to 512:
T5's relative position buckets have no length limit; tests use 16 to stay fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import component_seed, seeded, tiny_vae, write_model_dir
from vlgen.testing.clip import clip_text_kwargs, clip_tokenizer

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5EncoderModel, T5TokenizerFast

TINY_CLIP_HIDDEN = 32  # = pooled_projection_dim (FLUX: 768)
TINY_T5_D_MODEL = 32  # = joint_attention_dim (FLUX: 4096)
TINY_LATENT_CHANNELS = 16  # as FLUX; packed 2x2 -> in_channels 64
TINY_SIZE = 64  # px: 8x8 latents, 4x4 packed tokens
T5_MAX_LENGTH = 512  # tokenizer_2's model_max_length; FluxPipeline's max_sequence_length is at most this
FLUX_SCALING_FACTOR = 0.3611
FLUX_SHIFT_FACTOR = 0.1159


def t5_tokenizer() -> T5TokenizerFast:
    """T5 Unigram tokenizer over `vlgen.testing.vocab.t5_unigram()` (336 pieces; google/t5-v1_1-xxl: 32,100).

    transformers 5 has one T5 tokenizer class, backed by `tokenizers` (`T5TokenizerFast` is an alias of
    `T5Tokenizer`), so it saves as tokenizer.json + tokenizer_config.json and the pipeline's model_index.json
    names it "T5Tokenizer" where the real one says "T5TokenizerFast"; diffusers loads either. No SentencePiece
    model and no normaliser (the real one has NFKC's precompiled charsmap): the pre-tokenizer (split on
    whitespace, "▁" before every word) and the post-processor (`</s>` appended) are T5's own.
    """
    from transformers import T5TokenizerFast

    from vlgen.testing.vocab import T5_EOS, T5_EXTRA_IDS, T5_PAD, T5_UNK, t5_unigram

    vocab = t5_unigram()
    tok = T5TokenizerFast(
        vocab=vocab,
        eos_token=T5_EOS,
        unk_token=T5_UNK,
        pad_token=T5_PAD,
        extra_ids=T5_EXTRA_IDS,
        model_max_length=T5_MAX_LENGTH,
    )
    if len(tok) != len(vocab) or (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) != (0, 1, 2):
        raise RuntimeError(f"T5 tokenizer has {len(tok)} tokens and pad/eos/unk ids {tok.pad_token_id}/"
                           f"{tok.eos_token_id}/{tok.unk_token_id}; expected {len(vocab)} and 0/1/2")  # fmt: skip
    return tok


def tiny_t5_encoder(vocab_size: int) -> T5EncoderModel:
    """T5 v1.1's encoder at d_model 32. `vocab_size` is the tokenizer's rounded up to a multiple of 64, as
    t5-v1_1's embedding (32,128 rows) is larger than its vocabulary (32,100)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=-(-vocab_size // 64) * 64,
        d_model=TINY_T5_D_MODEL,
        d_kv=8,
        d_ff=80,  # 2.5 x d_model, as 10240 / 4096
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def tiny_flux_transformer(guidance_embeds: bool = True) -> FluxTransformer2DModel:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=TINY_LATENT_CHANNELS * 4,  # 16 channels x 2x2 packed patch
        num_layers=1,  # double-stream (FLUX: 19)
        num_single_layers=2,  # single-stream (FLUX: 38)
        attention_head_dim=16,
        num_attention_heads=2,  # inner width 32 (FLUX: 24 x 128 = 3072)
        joint_attention_dim=TINY_T5_D_MODEL,
        pooled_projection_dim=TINY_CLIP_HIDDEN,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),  # (time/index, row, column) rotary dims, summing to attention_head_dim
    )


def tiny_flux_vae() -> AutoencoderKL:
    """4 levels (3 downsamplings): the real `vae_scale_factor` of 8; 16 latent channels without the 1x1 quant convs."""
    return tiny_vae(
        FLUX_SCALING_FACTOR, latent_channels=TINY_LATENT_CHANNELS, sample_size=TINY_SIZE,
        shift_factor=FLUX_SHIFT_FACTOR, use_quant_conv=False, use_post_quant_conv=False,
    )  # fmt: skip


def flux_scheduler(schnell: bool = False) -> FlowMatchEulerDiscreteScheduler:
    """FLUX.1-dev's scheduler_config.json (`configs/flux-dev/scheduler.json`); schnell's differs only in
    `shift` 1.0 and `use_dynamic_shifting` false."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from vlgen.testing.published import published_config

    config = published_config("flux-dev/scheduler")
    if schnell:
        config.update(shift=1.0, use_dynamic_shifting=False)
    return FlowMatchEulerDiscreteScheduler.from_config(config)


def tiny_flux_pipeline(seed: int = 0, guidance_embeds: bool = True) -> FluxPipeline:
    """The in-memory pipeline that `build_tiny_flux` saves (components seeded one by one).

    `guidance_embeds=False` is the schnell variant: no guidance embedder and schnell's static-shift scheduler.
    """
    from diffusers import FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()  # pads with <|endoftext|> (CLIP ViT-L)
    tokenizer_2 = t5_tokenizer()
    with seeded(component_seed(seed, 0)):
        transformer = tiny_flux_transformer(guidance_embeds)
    with seeded(component_seed(seed, 1)):
        vae = tiny_flux_vae()
    with seeded(component_seed(seed, 2)):
        config = CLIPTextConfig(
            hidden_size=TINY_CLIP_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            hidden_act="quick_gelu",
            projection_dim=TINY_CLIP_HIDDEN,
            **clip_text_kwargs(tokenizer),
        )
        text_encoder = CLIPTextModel(config)
    with seeded(component_seed(seed, 3)):
        text_encoder_2 = tiny_t5_encoder(len(tokenizer_2))
    pipe = FluxPipeline(
        scheduler=flux_scheduler(schnell=not guidance_embeds),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    for module in (transformer, vae, text_encoder, text_encoder_2):
        module.eval()  # as `from_pretrained` returns them
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_flux(out: str | os.PathLike, seed: int = 0, guidance_embeds: bool = True) -> Path:
    """Tiny FLUX.1-dev pipeline saved with `save_pretrained` (safetensors; about 2 MB), random weights.
    `guidance_embeds=False` writes the FLUX.1-schnell variant (`build_tiny_flux_schnell`)."""

    def build(tmp: Path) -> None:
        tiny_flux_pipeline(seed, guidance_embeds).save_pretrained(tmp)

    return write_model_dir(out, "flux" if guidance_embeds else "flux-schnell", seed, build)


def build_tiny_flux_schnell(out: str | os.PathLike, seed: int = 0) -> Path:
    """Tiny FLUX.1-schnell pipeline: `build_tiny_flux` without guidance embeddings, schnell's scheduler."""
    return build_tiny_flux(out, seed, guidance_embeds=False)
