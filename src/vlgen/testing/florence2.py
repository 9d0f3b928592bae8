"""Tiny Florence-2 captioner: `Florence2ForConditionalGeneration` + `Florence2Processor` laid out like the native
transformers checkpoints florence-community/Florence-2-base and -large.

Kept from the real checkpoints: the model class and config schema (DaViT vision tower of four stages with
strides 4, 2, 2, 2, a projector to the BART width, a BART encoder-decoder); `CLIPImageProcessor` with CLIP's
mean/std, no crop, a square resize and `image_seq_length` = (side / 32)^2 spatial tokens + 1 temporal token
(768 px -> 577; here 64 px -> 5); a BART byte-level BPE tokenizer with `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3,
`<mask>` after the BPE tokens and `<image>` (the image placeholder, `image_token`) last; the processor's task
tokens (`<CAPTION>` ...) expand to their instructions as in the real one. Generation starts from `</s>` (BART's
decoder_start) and ends at `</s>`. The BPE vocab is the tiny GPT-2 one shipped in `vocabs/gpt2/`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import seeded, spread_weights, write_model_dir
from vlgen.testing.vocab import GPT2_EOS, byte_level_bpe

if TYPE_CHECKING:
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

TINY_IMAGE_SIZE = 64  # the DaViT tower reduces by 32: a 2 x 2 feature map
BART_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as in facebook/bart-base and Florence-2
IMAGE_TOKEN = "<image>"


def florence2_tokenizer(vocab_size: int | None = None):
    """BART byte-level BPE (`BartTokenizer`) over the tiny GPT-2 merges, with Florence-2's `<image>` token.

    `vocab_size` (e.g. 51328, Florence-2-base's): the vocabulary is padded with tokens "Ġw<id>" (" w<id>" when
    decoded) up to that many ids, `<image>` last, so that every id a published-size model generates decodes to
    its own word - a random model's captions can then be compared as text (the tiny BPE alone has ~500 ids and
    decodes the rest to nothing). Encoding still uses only the tiny BPE's tokens.
    """
    from transformers import BartTokenizer

    vocab, merges = byte_level_bpe()
    tokens = [*BART_SPECIALS, *(t for t in vocab if t != GPT2_EOS)]
    if vocab_size is not None:
        if vocab_size < len(tokens) + 2:
            raise ValueError(f"vocab_size {vocab_size}: the tiny BART vocabulary already has {len(tokens) + 2} ids")
        tokens += [f"Ġw{i}" for i in range(len(tokens), vocab_size - 2)]
    tokens.append("<mask>")
    tok = BartTokenizer(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=merges,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=1024,
        extra_special_tokens={"image_token": IMAGE_TOKEN},  # tokenizer.image_token / image_token_id
    )
    if tok.image_token_id != len(tokens):
        raise RuntimeError(f"Florence-2 tokenizer: <image> is id {tok.image_token_id}, expected {len(tokens)}")
    return tok


def florence2_processor(image_size: int = TINY_IMAGE_SIZE, vocab_size: int | None = None) -> Florence2Processor:
    """`CLIPImageProcessor` at `image_size` + `florence2_tokenizer(vocab_size)` (see there)."""
    from transformers import CLIPImageProcessor, Florence2Processor
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

    images = CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
        resample=PILImageResampling.BICUBIC,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        image_seq_length=(image_size // 32) ** 2 + 1,
    )
    return Florence2Processor(image_processor=images, tokenizer=florence2_tokenizer(vocab_size))


def tiny_florence2(seed: int = 0) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    """The in-memory model and processor that `build_tiny_florence2` saves."""
    import torch
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    processor = florence2_processor()
    tok = processor.tokenizer
    text = dict(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
    )
    vision = dict(
        depths=[1, 1, 1, 1],
        embed_dim=[8, 8, 16, 16],
        num_heads=[1, 1, 2, 2],
        num_groups=[1, 1, 2, 2],
        window_size=2,
        projection_dim=32,  # = d_model: image tokens enter the BART encoder beside the prompt's
        drop_path_rate=0.0,
        max_position_embeddings=8,
    )
    config = Florence2Config(text_config=text, vision_config=vision, image_token_id=tok.image_token_id)
    with seeded(seed):
        model = Florence2ForConditionalGeneration(config).eval()
        spread_weights(model)
    # Tied random embeddings make the input token the likeliest next one, and the decoder starts from </s> =
    # eos, so every caption would end at once. Shrinking that row keeps random captions non-empty.
    with torch.no_grad():
        model.get_input_embeddings().weight[tok.eos_token_id] *= 0.1
    gen = model.generation_config
    gen.decoder_start_token_id, gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = 2, 0, 2, 1
    return model, processor


def build_tiny_florence2(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny Florence-2 captioner with its processor (well under 1 MB)."""

    def build(tmp: Path) -> None:
        model, processor = tiny_florence2(seed)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    return write_model_dir(out, "florence-2", seed, build)
