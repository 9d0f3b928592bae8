"""BLIP captioner: `BlipForConditionalGeneration` + `BlipProcessor`, default Salesforce/blip-image-captioning-base.

Training follows BLIP/LAVIS: the text decoder input starts with `[DEC]` (the config's
`text_config.bos_token_id`) instead of the tokenizer's `[CLS]`, ends with `[SEP]` (the eos BLIP's
`generate` stops at), and padding is ignored in the loss (-100). Training with `[CLS]` as the first
token - a common mistake in fine-tuning notebooks - teaches the model a prefix it never sees at
generation time. The text LM head shifts labels itself and applies BLIP's label smoothing of 0.1.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from vlgen.captioning.base import Captioner, processor_input_size, strip_captions
from vlgen.hub import DEFAULT_MODELS, resolve_model


def _sdpa_blip_attention_forward(self, hidden_states: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """`BlipAttention.forward` (the ViT's self-attention) through `F.scaled_dot_product_attention`.

    Same math as transformers' eager forward - softmax(Q K^T * head_dim^-0.5) V, no mask, dropout off in
    eval - but one fused kernel instead of matmul, scale, softmax and matmul over a (B, H, T, T) tensor
    (T = 577 at 384 px: 8 x 12 x 577 x 577 fp32 = 128 MB written several times per layer). Attention
    probabilities are not returned (None), which only `output_attentions` would have wanted.
    """
    bsz, tgt_len, embed_dim = hidden_states.shape  # (B, T, C)
    qkv = self.qkv(hidden_states).reshape(bsz, tgt_len, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
    context = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)  # (B, H, T, d)
    return self.projection(context.transpose(1, 2).reshape(bsz, tgt_len, embed_dim)), None


@contextmanager
def sdpa_vision_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run BLIP's vision encoder with SDPA attention inside the block (inference only; restored after).

    transformers' BLIP has no SDPA implementation (`from_pretrained(..., attn_implementation="sdpa")`
    raises "does not support an attention implementation through ... scaled_dot_product_attention yet"),
    so the ViT attention modules get `_sdpa_blip_attention_forward` for the duration of the block. Outputs
    match eager to fp32 rounding (greedy captions identical: tests/captioning/test_blip_fast_path.py).
    Measured at B1 (BLIP-base, 384 px, batch 8, fp32, 2 shared cores; eager and SDPA alternating, median of 3):
    the vision encoder 2.29 -> 1.67 s/image (-27%), i.e. 1.65x -> 1.20x its matmul-bound floor. The profile of
    the eager encoder had bmm + softmax + scale-mul + copies at ~37% of its time; SDPA leaves the linears (~60%).
    Training (`loss`) never runs inside this block, so dropout and gradients keep transformers' own path.
    """
    from transformers.models.blip.modeling_blip import BlipAttention

    vision = getattr(model, "vision_model", None)
    patched = []
    for module in vision.modules() if vision is not None else ():
        # Skip modules already patched (a concurrent or nested call): they keep theirs and restore it.
        if isinstance(module, BlipAttention) and "forward" not in module.__dict__:
            module.forward = types.MethodType(_sdpa_blip_attention_forward, module)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _encoder_states_cross_attention_forward(
    self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None, **kwargs: Any
) -> tuple[torch.Tensor, None]:
    """The text decoder's cross-attention (`BlipTextSelfAttention` with `is_cross_attention`) for decoding.

    transformers projects the image tokens X (B, N, C), N = 577 at 384 px, to keys and values once per layer
    and caches them: 12 layers x 2 x N x C x C = 16.3 GFLOP per image before the first token (FLOP-bound, about
    as long as all 20 decoding steps after it), and beam search then re-indexes that (B*beams, H, N, d) cache
    every step. The same attention is computed here straight from X, with the projections moved onto the
    one query token instead:
        scores_h = q_h . (X Wk_h^T + bk_h)^T / sqrt(d)  = (q_h Wk_h) . X^T / sqrt(d) + const  (bk drops out of softmax)
        out_h    = softmax(scores_h) (X Wv_h^T + bv_h)    = (softmax(scores_h) X) Wv_h^T + bv_h   (rows sum to 1)
    Per step and layer that is two skinny matmuls over X (reading it twice, the traffic the K/V cache reads
    cost anyway) instead of the up-front projection, and nothing per beam to re-index. Like transformers'
    forward, the encoder attention mask is not applied (it passes `encoder_attention_mask=None` to this
    module; BLIP's image tokens are never padded), and dropout is off (generation only). Results equal the
    cached path to fp32 rounding; greedy and beam captions are compared identical in
    tests/captioning/test_blip_fast_path.py.
    """
    x = encoder_hidden_states  # (B, N, C_enc)
    bsz, tgt_len, _ = hidden_states.shape  # (B, T, C); T = 1 after the first step
    heads, head_dim = self.num_attention_heads, self.attention_head_size
    c_enc = x.shape[-1]
    q = self.query(hidden_states).view(bsz, tgt_len, heads, head_dim)  # (B, T, H, d)
    q_enc = torch.einsum("bthd,hdc->bhtc", q, self.key.weight.view(heads, head_dim, c_enc))  # (B, H, T, C_enc)
    scores = torch.bmm(q_enc.reshape(bsz, heads * tgt_len, c_enc), x.transpose(1, 2)) / math.sqrt(head_dim)
    ctx = torch.bmm(scores.softmax(dim=-1), x).view(bsz, heads, tgt_len, c_enc)  # (B, H, T, C_enc)
    out = torch.einsum("bhtc,hdc->bthd", ctx, self.value.weight.view(heads, head_dim, c_enc))  # (B, T, H, d)
    out = out + self.value.bias.view(heads, head_dim)
    return out.reshape(bsz, tgt_len, heads * head_dim), None


# Images per vision-encoder call on CPU. BLIP-base's largest activation, the MLP's (n, 577, 3072) fp32, is
# 7 MB per image: at 2 images it stays under glibc's mmap threshold (32 MB at most), so every layer reuses heap
# memory instead of mapping fresh pages the kernel must zero on first touch. Measured at B1 (16 images, 2
# cores): 60,000 -> 5,000 page faults and 0.18 -> 0.02 s of system time per image, GEMMs as fast.
CPU_VISION_CHUNK = 2


def _vision_in_chunks(forward, pixel_values: torch.Tensor, **kwargs: Any):
    """`BlipVisionModel.forward` over CPU batches in chunks of CPU_VISION_CHUNK images, outputs concatenated."""
    wants_more = kwargs.get("output_hidden_states") or kwargs.get("output_attentions")  # not concatenated here
    if pixel_values.device.type != "cpu" or len(pixel_values) <= CPU_VISION_CHUNK or wants_more:
        return forward(pixel_values=pixel_values, **kwargs)
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    outs = [forward(pixel_values=chunk, **kwargs) for chunk in pixel_values.split(CPU_VISION_CHUNK)]
    return BaseModelOutputWithPooling(
        last_hidden_state=torch.cat([o.last_hidden_state for o in outs]),  # (B, N, C)
        pooler_output=torch.cat([o.pooler_output for o in outs]),  # (B, C)
    )


@contextmanager
def fast_generation(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, `model.generate` runs the ViT with SDPA (in chunks on CPU) and the decoder's
    cross-attention on the image tokens X.

    Measured at B1 (BLIP-base, 384 px, 16 images, greedy 20 tokens, 2 shared cores, alternating, median of 3):
    decoding after the encoder 0.27 -> 0.19 s/image; with 4 beams (8 images) 2.5 -> 0.66 s/image.
    """
    from transformers.models.blip.modeling_blip_text import BlipTextLayer

    vision = getattr(model, "vision_model", None)
    chunk_vision = vision is not None and "forward" not in vision.__dict__
    if chunk_vision:
        vision.forward = functools.partial(_vision_in_chunks, type(vision).forward.__get__(vision))
    decoder = getattr(model, "text_decoder", None)
    patched = []
    for module in decoder.modules() if decoder is not None else ():
        cross = getattr(module, "crossattention", None) if isinstance(module, BlipTextLayer) else None
        if cross is not None and "forward" not in cross.self.__dict__:
            cross.self.forward = types.MethodType(_encoder_states_cross_attention_forward, cross.self)
            patched.append(cross.self)
    try:
        with sdpa_vision_attention(model):
            yield
    finally:
        for module in patched:
            del module.forward
        if chunk_vision:
            del vision.forward


class BlipCaptioner(Captioner):
    family = "blip"

    def __init__(self, model, processor) -> None:
        self.model = model
        self.processor = processor

    @classmethod
    def load(cls, ref: str | Path | None = None, device: str | torch.device = "cpu", dtype=None) -> BlipCaptioner:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        resolved = resolve_model(ref or DEFAULT_MODELS["blip"], what="BLIP captioner")
        processor = BlipProcessor.from_pretrained(resolved.path)
        model = BlipForConditionalGeneration.from_pretrained(resolved.path, dtype=dtype or torch.float32)
        return cls(model.to(device).eval(), processor)

    @property
    def input_size(self) -> tuple[int, int] | None:
        return processor_input_size(self.processor.image_processor)  # (384, 384) for blip-base

    def _pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        # (B, 3, S, S), S = the processor's size (384 for blip-base)
        pv = self.processor(images=list(images), return_tensors="pt").pixel_values
        return pv.to(self.device, dtype=self.model.dtype)

    @torch.no_grad()
    def generate(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[str]:
        was_training = self.model.training
        self.model.eval()
        try:
            with fast_generation(self.model):
                ids = self.model.generate(
                    pixel_values=self._pixel_values(images),
                    num_beams=num_beams,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    **generate_kwargs,
                )
        finally:
            self.model.train(was_training)
        return strip_captions(self.processor.batch_decode(ids, skip_special_tokens=True))

    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        text = self.processor.tokenizer(
            list(captions), padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
        )
        input_ids = text.input_ids.clone()  # (B, T): [CLS] w1 .. wn [SEP] [PAD]*
        input_ids[:, 0] = self.model.config.text_config.bos_token_id  # [DEC], as generate() starts
        labels = input_ids.masked_fill(text.attention_mask == 0, -100)
        pv = self.processor(images=list(images), return_tensors="pt").pixel_values
        return {"pixel_values": pv, "input_ids": input_ids, "attention_mask": text.attention_mask, "labels": labels}

    def loss(self, batch: dict) -> torch.Tensor:
        batch = {**batch, "pixel_values": batch["pixel_values"].to(self.model.dtype)}
        return self.model(**batch).loss

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        return out
