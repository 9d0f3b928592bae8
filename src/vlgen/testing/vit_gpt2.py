"""Tiny ViT-GPT2 captioner: `VisionEncoderDecoderModel` (ViTModel -> GPT2LMHeadModel with cross-attention)
laid out like nlconnect/vit-gpt2-image-captioning.

Kept from the real checkpoint: the model classes and config schema; `ViTImageProcessor` with mean/std 0.5;
a byte-level BPE `GPT2TokenizerFast` whose only special token is `<|endoftext|>`, used as bos = eos =
decoder_start = pad (nlconnect sets all four to 50256, GPT-2's `<|endoftext|>`), and - like the real
tokenizer - no pad token of its own. The BPE vocab (~500 tokens instead of 50,257) is shipped in
`vocabs/gpt2/`, trained on the built-in caption corpus by the deterministic trainer in `vlgen.testing.vocab`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import seeded, write_model_dir
from vlgen.testing.vocab import GPT2_EOS, byte_level_bpe

if TYPE_CHECKING:
    from transformers import GPT2TokenizerFast, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTImageProcessor

TINY_IMAGE_SIZE = 32
TINY_MAX_POSITIONS = 64


def gpt2_tokenizer(model_max_length: int = TINY_MAX_POSITIONS, vocab_size: int | None = None) -> GPT2TokenizerFast:
    """The tiny byte-level BPE with `<|endoftext|>` as its only special token (last id, as in GPT-2).

    `vocab_size` (e.g. 50257, GPT-2's): the vocabulary is padded with tokens "Ġw<id>" (" w<id>" when decoded) up to
    that many ids, `<|endoftext|>` moved to the last (50256, the id nlconnect's config names), so that every id a
    published-size model generates decodes to its own word - a random model's captions can then be compared as
    text (the tiny BPE alone has ~500 ids and decodes the rest to nothing). Encoding still uses only the tiny BPE.
    """
    from transformers import GPT2TokenizerFast

    vocab, merges = byte_level_bpe()  # shipped files (vocabs/gpt2/), trained by vlgen.testing.vocab
    if vocab_size is not None:
        if vocab_size < len(vocab):
            raise ValueError(f"vocab_size {vocab_size}: the tiny GPT-2 vocabulary already has {len(vocab)} ids")
        tokens = sorted((t for t in vocab if t != GPT2_EOS), key=vocab.__getitem__)
        tokens += [f"Ġw{i}" for i in range(len(tokens), vocab_size - 1)]
        vocab = {t: i for i, t in enumerate([*tokens, GPT2_EOS])}
    # `vocab=`/`merges=` (dict / list of pairs): `vocab_file=`/`merges_file=` silently give an empty vocab
    # in transformers 5.
    tok = GPT2TokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token=GPT2_EOS,
        bos_token=GPT2_EOS,
        eos_token=GPT2_EOS,
        model_max_length=model_max_length,
    )
    if len(tok) != len(vocab):
        raise RuntimeError(f"GPT-2 tokenizer has {len(tok)} tokens; expected {len(vocab)}")
    return tok


def vit_image_processor(image_size: int = TINY_IMAGE_SIZE) -> ViTImageProcessor:
    from transformers import ViTImageProcessor
    from transformers.image_utils import PILImageResampling

    return ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        resample=PILImageResampling.BILINEAR,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def tiny_vit_gpt2_config(vocab_size: int, eos_token_id: int) -> VisionEncoderDecoderConfig:
    from transformers import GPT2Config, VisionEncoderDecoderConfig, ViTConfig

    encoder = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,  # 16 patches + [CLS] = 17 encoder tokens
    )
    decoder = GPT2Config(
        vocab_size=vocab_size,
        n_positions=TINY_MAX_POSITIONS,
        n_embd=32,  # = encoder hidden_size, so cross-attention needs no projection (as in ViT-base + GPT-2: 768)
        n_layer=2,
        n_head=4,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        add_cross_attention=True,
        is_decoder=True,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = eos_token_id
    config.pad_token_id = eos_token_id
    config.eos_token_id = eos_token_id
    config.bos_token_id = eos_token_id
    return config


def tiny_vit_gpt2(seed: int = 0) -> tuple[VisionEncoderDecoderModel, ViTImageProcessor, GPT2TokenizerFast]:
    """The in-memory model, image processor and tokenizer that `build_tiny_vit_gpt2` saves."""
    import torch
    from transformers import VisionEncoderDecoderModel

    tok = gpt2_tokenizer()
    config = tiny_vit_gpt2_config(len(tok), tok.eos_token_id)
    with seeded(seed):
        model = VisionEncoderDecoderModel(config=config).eval()
    # With tied random embeddings the top logit is usually the input token itself, and the decoder
    # starts from <|endoftext|> = eos, so every caption would end at once (empty). Shrinking that one
    # embedding row keeps eos unlikely and random captions non-empty (max_length tokens long).
    with torch.no_grad():
        model.decoder.transformer.wte.weight[tok.eos_token_id] *= 0.1
    gen = model.generation_config
    gen.decoder_start_token_id = gen.bos_token_id = gen.eos_token_id = gen.pad_token_id = tok.eos_token_id
    gen.max_length = 16  # nlconnect's model card decodes with max_length=16
    return model, vit_image_processor(), tok


def build_tiny_vit_gpt2(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny ViT-GPT2 captioner with its image processor and tokenizer (well under 1 MB)."""

    def build(tmp: Path) -> None:
        model, image_processor, tok = tiny_vit_gpt2(seed)
        model.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return write_model_dir(out, "vit-gpt2", seed, build)
