"""BLIP's fast generation path: three patches to transformers' private BLIP classes, for `generate` only.

`BlipCaptioner.generate` runs `model.generate` inside `fast_generation(model)` when the captioner's
`fast_path` is on (the default). Inside the block, and only there (each patch is an instance attribute,
deleted on exit):
- the ViT's self-attention (`BlipAttention`) runs through `F.scaled_dot_product_attention`;
- the text decoder's cross-attention (`BlipTextSelfAttention` of each `BlipTextLayer.crossattention`) is
  computed straight from the image tokens X, with the key/value projections moved onto the query token;
- on CPU the vision encoder (`BlipVisionModel.forward`) runs in chunks of `CPU_VISION_CHUNK` images.
Captions equal plain transformers' `generate` (greedy and beam; tests/captioning/test_blip_fast_path.py);
training (`loss`) never runs inside the block. Timings: benchmarks/README.md, "B1".

Nothing is patched at import: the caller enters `fast_generation(model)` explicitly.

Switching back to plain transformers (e.g. to rule the patches out when something looks wrong):
- per load: `load_captioner(ref, fast_path=False)` or `BlipCaptioner.load(ref, fast_path=False)`;
- per process: the environment variable `VLGEN_BLIP_FAST_PATH=0` (also `false`, `no`, `off`), read when a
  BLIP captioner is created without an explicit `fast_path`; `1`/`true`/`yes`/`on` or unset: on.

The patches rely on private names and signatures of transformers' BLIP modules (`INTERNALS` lists them).
`transformers_internals_problems()` checks them - names, signatures, attributes, and that each patched
forward equals the original on a tiny module - and returns what changed; a captioner whose transformers
fails the check warns and falls back to plain transformers. tests/captioning/test_blip_fast_path.py fails,
naming the transformers version, when an upgrade changes them. Written against transformers 5.24.
The switch, the checker loop and the fallback are shared by all fast paths: `vlgen.captioning.fast_path`.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from vlgen.captioning import fast_path as _shared

ENV_VAR = "VLGEN_BLIP_FAST_PATH"
WRITTEN_FOR_TRANSFORMERS = "5.24"

# What the patches rely on: module -> class -> (forward parameters that must exist, instance attributes).
INTERNALS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "transformers.models.blip.modeling_blip": {
        # replaced forward(hidden_states) -> (output, attn_probs); reads qkv, projection, num_heads, head_dim, scale
        "BlipAttention": (("hidden_states",), ("qkv", "projection", "num_heads", "head_dim", "scale")),
        # wrapped forward(pixel_values=...) -> BaseModelOutputWithPooling(last_hidden_state, pooler_output)
        "BlipVisionModel": (("pixel_values",), ()),
        # attributes the patches are looked up from
        "BlipForConditionalGeneration": (("pixel_values",), ("vision_model", "text_decoder")),
    },
    "transformers.models.blip.modeling_blip_text": {
        # its `crossattention` (BlipTextAttention) calls `.self(hidden_states, encoder_hidden_states=X, ...)`
        "BlipTextLayer": (("hidden_states", "encoder_hidden_states"), ("crossattention",)),
        "BlipTextAttention": (("hidden_states", "encoder_hidden_states"), ("self",)),
        # replaced forward(hidden_states, encoder_hidden_states=X) -> (context, attn_probs)
        "BlipTextSelfAttention": (
            ("hidden_states", "encoder_hidden_states"),
            ("query", "key", "value", "num_attention_heads", "attention_head_size"),
        ),
    },
}


def fast_path_enabled(fast_path: bool | None = None) -> bool:
    """`fast_path` if given, else `$VLGEN_BLIP_FAST_PATH` (unset: on). A value that is not a yes/no is refused."""
    return _shared.env_switch(ENV_VAR, fast_path)


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
    The eager encoder spends a large share of its time in bmm + softmax + scale-mul + copies over the
    (B, H, T, T) scores; SDPA leaves the linears (numbers: benchmarks/README.md, B1).
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
    and caches them: 12 layers x 2 x N x C x C = 16.3 GFLOP per image before the first token, and beam search
    then re-indexes that (B*beams, H, N, d) cache every step. The same attention is computed here straight
    from X, with the projections moved onto the one query token instead:
        scores_h = q_h . (X Wk_h^T + bk_h)^T / sqrt(d)  = (q_h Wk_h) . X^T / sqrt(d) + const  (bk drops out of softmax)
        out_h    = softmax(scores_h) (X Wv_h^T + bv_h)    = (softmax(scores_h) X) Wv_h^T + bv_h   (rows sum to 1)
    Per step and layer that is one attention over X (SDPA with X as keys and values, the H heads' projected
    queries as its query rows: X read once, less than the K/V cache reads cost) instead of the up-front
    projection, and nothing per beam to re-index. Like transformers'
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
    # softmax(q_enc X^T / sqrt(d)) X as one attention "head" whose H*T query rows share X as keys and values:
    # SDPA's fused kernel reads each block of X once for both products, where two bmm's read all of X twice
    # (X is (B, 577, 768) fp32, 57 MB at B = 32: this is memory-bound; ~20% less time than two bmm's on CPU).
    ctx = F.scaled_dot_product_attention(
        q_enc.reshape(bsz, 1, heads * tgt_len, c_enc), x.unsqueeze(1), x.unsqueeze(1), scale=head_dim**-0.5
    ).view(bsz, heads, tgt_len, c_enc)  # (B, H, T, C_enc)
    out = torch.einsum("bhtc,hdc->bthd", ctx, self.value.weight.view(heads, head_dim, c_enc))  # (B, T, H, d)
    out = out + self.value.bias.view(heads, head_dim)
    return out.reshape(bsz, tgt_len, heads * head_dim), None


# Images per vision-encoder call on CPU. BLIP-base's largest activation, the MLP's (n, 577, 3072) fp32, is
# 7 MB per image: at 2 images it stays under glibc's mmap threshold (32 MB at most), so every layer reuses heap
# memory instead of mapping fresh pages the kernel must zero on first touch (page faults and system time:
# benchmarks/README.md, B1).
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
    cross-attention on the image tokens X; on exit the model is plain transformers again.

    Only for generation (no_grad, eval): the patches drop dropout and attention probabilities.
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


def _check_tiny_modules(classes: dict[str, type]) -> list[str]:
    """Build the smallest module of each patched class: the attributes the patches read exist, and each patched
    forward, called the way transformers calls it, equals transformers' own (fp32, eval, no grad)."""
    from transformers import BlipTextConfig, BlipVisionConfig

    problems = []
    gen = torch.Generator().manual_seed(0)
    vision_cfg = BlipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8
    )
    text_cfg = BlipTextConfig(
        hidden_size=16, encoder_hidden_size=12, intermediate_size=32, num_attention_heads=2, is_decoder=True
    )
    attn = classes["BlipAttention"](vision_cfg).eval()
    layer = classes["BlipTextLayer"](text_cfg, 0).eval()
    cross = getattr(getattr(layer, "crossattention", None), "self", None)
    if not isinstance(cross, classes["BlipTextSelfAttention"]):
        return ["BlipTextLayer(is_decoder=True).crossattention.self is not a BlipTextSelfAttention"]
    for name, module in (("BlipAttention", attn), ("BlipTextSelfAttention", cross)):
        if missing := [a for a in INTERNALS[_MODULE_OF[name]][name][1] if not hasattr(module, a)]:
            problems.append(f"{name} instances have no {', '.join(missing)}")
    if problems:
        return problems
    with torch.no_grad():
        h = torch.randn(2, 5, 16, generator=gen)
        if not torch.allclose(_sdpa_blip_attention_forward(attn, h)[0], attn(h)[0], rtol=1e-4, atol=1e-5):
            problems.append("BlipAttention.forward: the SDPA forward no longer equals transformers' output")
        for p in (cross.query.bias, cross.key.bias, cross.value.bias):
            p.normal_(generator=gen)
        x, q = torch.randn(2, 7, 12, generator=gen), torch.randn(2, 3, 16, generator=gen)
        ref = layer.crossattention(q, encoder_hidden_states=x)[0]
        cross.forward = types.MethodType(_encoder_states_cross_attention_forward, cross)
        got = layer.crossattention(q, encoder_hidden_states=x)[0]
        if not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
            problems.append("BlipTextAttention(encoder_hidden_states=X): the cross-attention on X no longer equals")
        vision = classes["BlipVisionModel"](vision_cfg).eval()
        pv = torch.randn(CPU_VISION_CHUNK + 1, 3, 16, 16, generator=gen)
        ref, got = vision(pixel_values=pv), _vision_in_chunks(vision.forward, pv)
        for field in ("last_hidden_state", "pooler_output"):
            if not torch.allclose(getattr(got, field), getattr(ref, field), rtol=1e-4, atol=1e-5):
                problems.append(f"BlipVisionModel.forward in chunks: {field} no longer equals the whole batch's")
    return problems


_MODULE_OF = {cls: module for module, wanted in INTERNALS.items() for cls in wanted}
# INTERNALS as the shared checker reads it: the method checked per class (generation's entry point: `generate`)
_METHODS = {
    module: {
        cls: ("generate" if cls == "BlipForConditionalGeneration" else "forward", params)
        for cls, (params, _) in wanted.items()
    }
    for module, wanted in INTERNALS.items()
}


def _mask_problems(classes: dict[str, type]) -> list[str]:
    if "BlipAttention" not in classes:
        return []
    names = list(inspect.signature(classes["BlipAttention"].forward).parameters)
    if any(n in names for n in ("attention_mask", "head_mask")):  # a mask the SDPA forward would ignore
        return [f"BlipAttention.forward({', '.join(names)}) now takes a mask"]
    return []


@functools.lru_cache(maxsize=1)
def _problems() -> tuple[str, ...]:
    return _shared.check_internals(
        _METHODS,
        _check_tiny_modules,
        "tiny BLIP modules",
        more_checks=_mask_problems,
        outputs=("BaseModelOutputWithPooling",),
    )


def transformers_internals_problems() -> list[str]:
    """What no longer matches the transformers internals the fast path patches (empty: all as written for).

    Checked once per process: class and parameter names (`INTERNALS`), the attributes the patched forwards
    read, and that each patched forward equals transformers' on a tiny random module.
    """
    return list(_problems())


def internals_message(problems: list[str]) -> str:
    return _shared.changed_internals_message(
        "BLIP internals vlgen's fast path patches", WRITTEN_FOR_TRANSFORMERS, "vlgen/captioning/blip_fast.py", problems
    )


def fast_path_usable(fast_path: bool | None = None) -> bool:
    """Whether a BLIP captioner should use `fast_generation`: enabled (argument / `$VLGEN_BLIP_FAST_PATH`) and
    transformers' internals as the patches expect. If they are not, warns once and answers False: captions then
    come from plain transformers, only slower."""
    return _shared.usable(fast_path_enabled(fast_path), transformers_internals_problems, internals_message, ENV_VAR)
