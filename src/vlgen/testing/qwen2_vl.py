"""Tiny Qwen2-VL captioner: `Qwen2VLForConditionalGeneration` + `Qwen2VLProcessor` laid out like
Qwen/Qwen2-VL-2B-Instruct (the layout Qwen2.5-VL and Qwen3-VL keep).

Kept from the real checkpoint: the model class and config schema (ViT with 14 px patches, 2 frames per temporal
patch, 2 x 2 patch merging into the LM's width; a Qwen2 decoder with multimodal RoPE sections); the image
processor's dynamic resolution (sides rounded to multiples of 28, between `min_pixels` and `max_pixels`), so
images of different shapes give different numbers of image tokens and a batch needs padding - the case batched
captioning must get right; a byte-level BPE `Qwen2Tokenizer` whose specials follow the BPE tokens in the real
order (`<|endoftext|>` pad, `<|im_start|>`, `<|im_end|>` eos, `<|vision_start|>`, `<|vision_end|>`,
`<|vision_pad|>`, `<|image_pad|>`, `<|video_pad|>`); and the instruct model's chat template (`CHAT_TEMPLATE`, a
copy of the hub's). The BPE vocab is the tiny GPT-2 one shipped in `vocabs/gpt2/`; `max_pixels` is 112 x 112.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import seeded, spread_weights, write_model_dir
from vlgen.testing.vocab import GPT2_EOS, byte_level_bpe

if TYPE_CHECKING:
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLProcessor

SPECIALS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
MIN_PIXELS = 28 * 28  # one merged image token
MAX_PIXELS = 112 * 112  # at most 16 merged image tokens
# Qwen2-VL-*-Instruct's chat_template: a system turn when none is given; images as <|vision_start|><|image_pad|>
# <|vision_end|> (the processor repeats <|image_pad|> once per merged patch).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen2_vl_tokenizer():
    from transformers import Qwen2TokenizerFast

    vocab, merges = byte_level_bpe()  # ends with <|endoftext|>, as Qwen's BPE tokens do
    vocab = {**vocab, **{t: len(vocab) + i for i, t in enumerate(SPECIALS)}}  # in the real order, eos among them
    tok = Qwen2TokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token=GPT2_EOS,
        model_max_length=32768,
        additional_special_tokens=list(SPECIALS),
    )
    if tok.convert_tokens_to_ids(list(SPECIALS)) != list(range(len(vocab) - len(SPECIALS), len(vocab))):
        raise RuntimeError("Qwen2-VL tokenizer: the special tokens are not the ids after the BPE vocab")
    return tok


def qwen2_vl_processor() -> Qwen2VLProcessor:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    sizes = dict(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14, merge_size=2, temporal_patch_size=2)
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizes),
        tokenizer=qwen2_vl_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(**sizes),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_qwen2_vl(seed: int = 0) -> tuple[Qwen2VLForConditionalGeneration, Qwen2VLProcessor]:
    """The in-memory model and processor that `build_tiny_qwen2_vl` saves."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    processor = qwen2_vl_processor()
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids
    eos, pad = ids("<|im_end|>"), ids(GPT2_EOS)
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},  # temporal, height, width; sums to head_dim/2
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    vision = dict(
        depth=2,
        embed_dim=32,
        hidden_size=32,  # = the LM's width: merged patches are image tokens
        num_heads=2,
        mlp_ratio=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        in_chans=3,
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    with seeded(seed):
        model = Qwen2VLForConditionalGeneration(config).eval()
        spread_weights(model)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = pad, [eos, pad], pad  # as the instruct checkpoint's
    return model, processor


def build_tiny_qwen2_vl(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny Qwen2-VL captioner with its processor and chat template (well under 1 MB)."""

    def build(tmp: Path) -> None:
        model, processor = tiny_qwen2_vl(seed)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    return write_model_dir(out, "qwen2-vl", seed, build)
