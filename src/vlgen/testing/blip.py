"""Tiny BLIP captioner: `BlipForConditionalGeneration` + `BlipProcessor` laid out like
Salesforce/blip-image-captioning-base, with the real tokenizer and token ids but toy widths.

Kept from the real checkpoint (so decoding code that works here works there):
- the bert-base-uncased WordPiece vocab plus `[DEC]` (bos, id 30522, the decoder start token) and
  `[ENC]` (additional special token, id 30523): vocab 30,524, `text_config.vocab_size` the same;
- `text_config`: bos_token_id 30522, sep_token_id 102 (`[SEP]`, what `generate` stops on), pad_token_id 0,
  eos_token_id 2 (as in the hub config; BLIP's generate ignores it in favour of sep);
- `BlipImageProcessor`: bicubic resize, CLIP mean/std, RGB conversion - only the size is 32 px, not 384.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import seeded, write_model_dir
from vlgen.testing.vocab import bert_uncased_vocab

if TYPE_CHECKING:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

BLIP_VOCAB_SIZE = 30524  # 30,522 WordPiece tokens + [DEC] + [ENC]
BLIP_DEC_ID = 30522
BLIP_ENC_ID = 30523
TINY_IMAGE_SIZE = 32


def tiny_blip_config() -> BlipConfig:
    from transformers import BlipConfig

    text = dict(
        vocab_size=BLIP_VOCAB_SIZE,
        hidden_size=32,
        encoder_hidden_size=32,  # = vision hidden_size: the text decoder cross-attends to the image patches
        intermediate_size=64,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=BLIP_DEC_ID,
        sep_token_id=102,
        pad_token_id=0,
        eos_token_id=2,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,  # 32/8 -> 16 patches + [CLS] = 17 image tokens
        initializer_range=0.02,  # the hub config's value; BlipVisionConfig's default 1e-10 gives ~constant features
    )
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)


def blip_tokenizer():
    """bert-base-uncased WordPiece + BLIP's `[DEC]`/`[ENC]`, as BLIP's `init_tokenizer()` adds them."""
    from transformers import BertTokenizerFast

    # `vocab=` a dict: in transformers 5, `BertTokenizer(vocab_file=...)` silently builds an empty vocab.
    tok = BertTokenizerFast(vocab=dict(bert_uncased_vocab()), do_lower_case=True, model_max_length=512)
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    if len(tok) != BLIP_VOCAB_SIZE or tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) != [BLIP_DEC_ID, BLIP_ENC_ID]:
        raise RuntimeError(f"BLIP tokenizer has {len(tok)} tokens; expected {BLIP_VOCAB_SIZE} with [DEC]=30522")
    return tok


def blip_processor(image_size: int = TINY_IMAGE_SIZE) -> BlipProcessor:
    from transformers import BlipImageProcessor, BlipProcessor
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

    images = BlipImageProcessor(
        size={"height": image_size, "width": image_size},
        resample=PILImageResampling.BICUBIC,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        do_convert_rgb=True,
    )
    return BlipProcessor(image_processor=images, tokenizer=blip_tokenizer())


def tiny_blip(seed: int = 0) -> tuple[BlipForConditionalGeneration, BlipProcessor]:
    """The in-memory model and processor that `build_tiny_blip` saves."""
    from transformers import BlipForConditionalGeneration

    with seeded(seed):
        model = BlipForConditionalGeneration(tiny_blip_config()).eval()
    model.generation_config.max_length = 20  # the hub config's default caption length
    return model, blip_processor()


def build_tiny_blip(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny BLIP captioner saved with `save_pretrained` (about 5 MB, mostly the 30,524 x 32 embedding)."""

    def build(tmp: Path) -> None:
        model, processor = tiny_blip(seed)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    return write_model_dir(out, "blip", seed, build)
