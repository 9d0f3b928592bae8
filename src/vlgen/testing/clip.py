"""Tiny CLIP for the image metrics (CLIP-T / CLIP-I): `CLIPModel` + `CLIPProcessor`, laid out like
openai/clip-vit-large-patch14 (quick_gelu, CLIP mean/std, resize shortest edge + center crop), toy widths.

`clip_tokenizer` is shared with the tiny SDXL pipeline, whose two tokenizers are CLIP tokenizers too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlgen.testing._common import seeded, write_model_dir
from vlgen.testing.vocab import CLIP_BOS, CLIP_EOS, clip_bpe

if TYPE_CHECKING:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

CLIP_MAX_LENGTH = 77  # CLIP's context length; SDXL pads/truncates every prompt to it
TINY_IMAGE_SIZE = 32


def clip_tokenizer(pad_token: str = CLIP_EOS) -> CLIPTokenizer:
    """CLIP BPE tokenizer on the built-in corpus (~740 tokens; the real one has 49,408).

    `pad_token`: openai/clip-vit-large-patch14 and SDXL's `tokenizer` pad with `<|endoftext|>`; SDXL's
    `tokenizer_2` (OpenCLIP bigG) pads with `"!"` (id 0) - pass `pad_token="!"` for that one.
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe()  # shipped files (vocabs/clip/), trained by vlgen.testing.vocab
    # merges as a list of (a, b) pairs: strings "a b" are rejected by the tokenizers backend here.
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=CLIP_EOS,
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        pad_token=pad_token,
        model_max_length=CLIP_MAX_LENGTH,
    )
    if len(tok) != len(vocab):
        raise RuntimeError(f"CLIP tokenizer has {len(tok)} tokens; expected {len(vocab)}")
    return tok


def clip_text_kwargs(tok: CLIPTokenizer) -> dict:
    """Text-tower fields that must agree with the tokenizer (vocab size and the special ids).

    With `eos_token_id` set to the real `<|endoftext|>` id, `CLIPTextModel` pools at the first eos
    (the modern rule); the real checkpoints say eos_token_id=2, which selects the legacy argmax rule -
    both pick the same position because `<|endoftext|>` has the largest id.
    """
    return dict(
        vocab_size=len(tok),
        max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def clip_image_processor(image_size: int = TINY_IMAGE_SIZE) -> CLIPImageProcessor:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def tiny_clip_config(tok: CLIPTokenizer) -> CLIPConfig:
    from transformers import CLIPConfig

    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="quick_gelu",
        **clip_text_kwargs(tok),
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
        hidden_act="quick_gelu",
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)


def tiny_clip(seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    """The in-memory model and processor that `build_tiny_clip` saves."""
    from transformers import CLIPModel, CLIPProcessor

    tok = clip_tokenizer()
    with seeded(seed):
        model = CLIPModel(tiny_clip_config(tok)).eval()
    return model, CLIPProcessor(image_processor=clip_image_processor(), tokenizer=tok)


def build_tiny_clip(out: str | os.PathLike, seed: int = 0) -> Path:
    """Random tiny `CLIPModel` + `CLIPProcessor` (well under 1 MB)."""

    def build(tmp: Path) -> None:
        model, processor = tiny_clip(seed)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    return write_model_dir(out, "clip", seed, build)
