"""ViT-GPT2's fast generation path: patches to transformers' private GPT-2 and generation code, for `generate`
only.

`VitGpt2Captioner.generate` runs `model.generate` inside `fast_generation(model)` when the captioner's
`fast_path` is on (the default). Inside the block, and only there (each patch is an instance attribute,
deleted on exit):
- GPT-2's cross-attention (`GPT2Attention` of each `GPT2Block.crossattention`) is computed straight from the
  image tokens X of each image (B, N, C), N = 197 at 224 px, with the key/value projections moved onto the
  query tokens, and the beams of one image folded into its queries. transformers (5.24) projects X to keys
  and values before the first token (12 layers x 2 x N x C x C = 5.6 GFLOP per image, as much as the 20
  decoding steps' own FLOPs), and with beam search does so for every beam of an image (generate expands the
  encoder output num_beams times first) and then re-indexes that (B*beams, H, N, d) cross-attention cache
  with the beam indices at every step, although the beams of one image share it;
- `model._expand_inputs_for_generation` is wrapped to remember which un-expanded encoder states (B, N, C) the
  expanded ones (B*beams, N, C) came from (generate still expands them, once: the rest of transformers sees
  the batch it expects).
The ViT encoder is left as transformers runs it: its self-attention already goes through SDPA in transformers
5.24 (`ViTModel` supports it and it is the default for `from_pretrained` and for models built from a config), and
running it in chunks of images on CPU (as BLIP's path does) cost more than it saved at torch's default 2 threads
(ViT-B/16's activations at 224 px are a third of BLIP's at 384 px; measurements: benchmarks/README.md, "ViT-GPT2").
Captions equal plain transformers' `generate` (greedy and beam; tests/captioning/test_vit_gpt2_fast_path.py);
training (`loss`) never runs inside the block. Timings: benchmarks/README.md, "ViT-GPT2".

Nothing is patched at import: the caller enters `fast_generation(model)` explicitly.

Switching back to plain transformers (e.g. to rule the patches out when something looks wrong):
- per load: `load_captioner(ref, fast_path=False)` or `VitGpt2Captioner.load(ref, fast_path=False)`;
- per process: the environment variable `VLGEN_VIT_GPT2_FAST_PATH=0` (also `false`, `no`, `off`), read when a
  ViT-GPT2 captioner is created without an explicit `fast_path`; `1`/`true`/`yes`/`on` or unset: on.

The patches rely on private names and signatures of transformers' GPT-2 and generation code (`INTERNALS`
lists them). `transformers_internals_problems()` checks them - names, signatures, attributes, and that each
patched forward equals the original on a tiny module - and returns what changed; a captioner whose transformers
fails the check warns and falls back to plain transformers. tests/captioning/test_vit_gpt2_fast_path.py fails,
naming the transformers version, when an upgrade changes them. Written against transformers 5.24.
The switch, the checker loop and the fallback are shared by all fast paths: `vlgen.captioning.fast_path`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from vlgen.captioning import fast_path as _shared

ENV_VAR = "VLGEN_VIT_GPT2_FAST_PATH"
WRITTEN_FOR_TRANSFORMERS = "5.24"

# What the patches rely on: module -> class -> (method, its parameters that must exist, instance attributes).
INTERNALS: dict[str, dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    "transformers.models.gpt2.modeling_gpt2": {
        # replaced forward(hidden_states, cache=, attention_mask=, encoder_hidden_states=X, encoder_attention_mask=)
        # -> (output, attn_weights); reads q_attn, c_attn (K|V packed), c_proj, heads, scaling
        "GPT2Attention": (
            "forward",
            ("hidden_states", "cache", "encoder_hidden_states", "encoder_attention_mask"),
            ("q_attn", "c_attn", "c_proj", "resid_dropout", "num_heads", "head_dim", "split_size", "scaling"),
        ),
        # calls `self.crossattention(hidden_states, ..., encoder_hidden_states=X, encoder_attention_mask=...)`
        "GPT2Block": ("forward", ("hidden_states", "encoder_hidden_states"), ("crossattention",)),
        "GPT2LMHeadModel": ("forward", ("input_ids", "encoder_hidden_states"), ("transformer",)),
        "GPT2Model": ("forward", ("input_ids", "encoder_hidden_states"), ("h",)),
    },
    "transformers.models.vision_encoder_decoder.modeling_vision_encoder_decoder": {
        # attributes the patches are looked up from; forward passes encoder_outputs[0] on as the decoder's X
        "VisionEncoderDecoderModel": ("forward", ("pixel_values", "encoder_outputs"), ("encoder", "decoder")),
    },
    "transformers.generation.utils": {
        # wrapped: expands model_kwargs["encoder_outputs"] (B, ...) -> (B * expand_size, ...) by repeat_interleave
        "GenerationMixin": ("_expand_inputs_for_generation", ("expand_size", "is_encoder_decoder", "input_ids"), ()),
    },
}


def fast_path_enabled(fast_path: bool | None = None) -> bool:
    """`fast_path` if given, else `$VLGEN_VIT_GPT2_FAST_PATH` (unset: on). A value that is not a yes/no is refused."""
    return _shared.env_switch(ENV_VAR, fast_path)


class _ImageTokens:
    """The encoder states of the generate call in progress: `expanded` (B*k, N, C), what generate passes to the
    decoder at every step, and `images` (B, N, C) it was expanded from (k = 1 greedy, num_beams with beams).
    Held as one (expanded, images) pair, replaced in one assignment (a concurrent generate on the same model can
    never pair one call's states with another's images); strong references, so `is` identifies them for the length
    of the block; dropped on exit."""

    def __init__(self) -> None:
        self.pair: tuple[torch.Tensor, torch.Tensor] | None = None

    def images_for(self, encoder_hidden_states: torch.Tensor | None) -> torch.Tensor | None:
        pair = self.pair
        if pair is not None and encoder_hidden_states is pair[0]:
            return pair[1]
        return None  # states this block did not see expanded (e.g. projected by enc_to_dec_proj per call)


def _expand_remembering_images(expand, tokens: _ImageTokens, *args: Any, **kwargs: Any):
    """`GenerationMixin._expand_inputs_for_generation`, remembering the encoder states before and after."""
    encoder_outputs = kwargs.get("encoder_outputs")
    images = getattr(encoder_outputs, "last_hidden_state", None)  # (B, N, C); expanded in place below
    input_ids, model_kwargs = expand(*args, **kwargs)
    expanded = getattr(model_kwargs.get("encoder_outputs"), "last_hidden_state", None)  # (B*k, N, C)
    if isinstance(images, torch.Tensor) and isinstance(expanded, torch.Tensor) and len(expanded) % len(images) == 0:
        tokens.pair = (expanded, images)
    return input_ids, model_kwargs


def _head_weights(attn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPT-2 cross-attention's packed key|value Conv1D (x W + b, W (C, 2 H d)) per head, laid out for bmm:
    s Wk (H, d, C) with the score scale s folded in, Wv (H, C, d), bv (H, 1, d). Copied once per block, not once
    per step."""
    heads, head_dim = attn.num_heads, attn.head_dim
    w_k, w_v = attn.c_attn.weight.split(attn.split_size, dim=1)  # (C, H d) each
    c_enc = w_k.shape[0]
    wk = (w_k * attn.scaling).view(c_enc, heads, head_dim).permute(1, 2, 0).contiguous()  # (H, d, C)
    wv = w_v.view(c_enc, heads, head_dim).permute(1, 0, 2).contiguous()  # (H, C, d)
    bv = attn.c_attn.bias[attn.split_size :].view(heads, 1, head_dim)
    return wk, wv, bv


def _cross_attention_on_image_tokens(
    self,
    tokens: _ImageTokens,
    weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    hidden_states: torch.Tensor,
    cache: Any = None,
    attention_mask: torch.Tensor | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    output_attentions: bool | None = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """GPT-2's cross-attention (`GPT2Attention(is_cross_attention=True)`) computed from each image's tokens X.

    With q_h the query of head h and X (N, C) the image's tokens, keys K_h = X Wk_h + bk_h, values
    V_h = X Wv_h + bv_h (GPT-2's Conv1D: x W + b):
        scores_h = q_h K_h^T * s = (q_h (s Wk_h)^T) X^T + const   (q_h . bk_h is the same for every key: drops out)
        out_h    = softmax(scores_h) V_h = (softmax(scores_h) X) Wv_h + bv_h   (softmax rows sum to 1)
    (s, the score scale, folded into the key weights once per block), so no (N, C) projection is made: per step
    and layer, two skinny matmuls over X (the traffic that reading the K/V cache costs anyway), the projections
    applied to the query rows. The k beams of an image (rows b*k .. b*k + k - 1 of the batch, as generate's
    repeat_interleave lays them out, and beam search only reorders rows within an image) share X: their queries
    are stacked, H * k * T rows per image, so nothing per beam is projected, stored or re-indexed. Like
    transformers in eval: no dropout; the encoder mask is None for ViT tokens (never padded) - with a mask, with
    attention weights asked for, or with encoder states this block did not see expanded, transformers' own forward
    runs. Results equal transformers' projected path to fp32 rounding; captions are
    compared identical in tests/captioning/test_vit_gpt2_fast_path.py.
    """
    x = tokens.images_for(encoder_hidden_states)  # (B, N, C) or None
    if x is None or encoder_attention_mask is not None or output_attentions or len(hidden_states) % len(x):
        return type(self).forward(
            self,
            hidden_states,
            cache=cache,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            output_attentions=output_attentions,
            **kwargs,
        )
    wk, wv, bv = weights  # (H, d, C), (H, C, d), (H, 1, d)
    n_img, _, c_enc = x.shape
    bsz, tgt_len, _ = hidden_states.shape  # (B*k, T, C); T = 1 after the first step
    heads, head_dim = self.num_heads, self.head_dim
    beams = bsz // n_img
    q = self.q_attn(hidden_states).view(bsz * tgt_len, heads, head_dim).transpose(0, 1)  # (H, B k T, d)
    q_enc = torch.bmm(q, wk)  # (H, B k T, C): s q_h Wk_h^T
    q_enc = q_enc.view(heads, n_img, beams * tgt_len, c_enc).transpose(0, 1).reshape(n_img, -1, c_enc)  # (B, H k T, C)
    scores = torch.bmm(q_enc, x.transpose(1, 2))  # (B, H k T, N), scaled
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(x.dtype)
    ctx = torch.bmm(probs, x)  # (B, H k T, C)
    ctx = ctx.view(n_img, heads, beams * tgt_len, c_enc).transpose(0, 1).reshape(heads, bsz * tgt_len, c_enc)
    out = torch.baddbmm(bv, ctx, wv)  # (H, B k T, d): (p X) Wv_h + bv_h
    out = out.transpose(0, 1).reshape(bsz, tgt_len, heads * head_dim)
    return self.resid_dropout(self.c_proj(out)), None


@contextmanager
def fast_generation(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, `model.generate` runs GPT-2's cross-attention on each image's tokens X (beams sharing
    them); on exit the model is plain transformers again. A VisionEncoderDecoder whose decoder is not GPT-2
    (TrOCR's, BERT's) has nothing patched but the expansion wrapper, and generates as transformers does.

    Only for generation (no_grad, eval): the patches drop dropout and cross-attention weights.
    """
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    tokens = _ImageTokens()
    patched: list[torch.nn.Module] = []
    expand = "_expand_inputs_for_generation"
    if hasattr(model, expand) and expand not in model.__dict__:
        setattr(model, expand, functools.partial(_expand_remembering_images, getattr(model, expand), tokens))
        patched.append(model)
    decoder = getattr(model, "decoder", None)
    with torch.no_grad():
        for module in decoder.modules() if decoder is not None else ():
            cross = getattr(module, "crossattention", None) if isinstance(module, GPT2Block) else None
            # Skip modules already patched (a concurrent or nested call): they keep theirs and restore it.
            if cross is not None and "forward" not in cross.__dict__:
                weights = _head_weights(cross)
                cross.forward = functools.partial(_cross_attention_on_image_tokens, cross, tokens, weights)
                patched.append(cross)
    try:
        yield
    finally:
        for module in patched:
            delattr(module, expand if module is model else "forward")
        tokens.pair = None


def _check_tiny_modules(classes: dict[str, type]) -> list[str]:
    """Build the smallest module of each patched class: the attributes the patches read exist, and each patched
    forward, called the way transformers calls it, equals transformers' own (fp32, eval, no grad)."""
    from transformers import GPT2Config
    from transformers.generation.utils import GenerationMixin
    from transformers.modeling_outputs import BaseModelOutput

    problems = []
    gen = torch.Generator().manual_seed(0)
    text_cfg = GPT2Config(
        n_embd=16, n_head=2, n_layer=1, n_positions=8, vocab_size=11, bos_token_id=0, eos_token_id=0,
        add_cross_attention=True,
    )  # fmt: skip
    text_cfg._attn_implementation = "sdpa"  # as from_pretrained sets it (a bare config has None)
    block = classes["GPT2Block"](text_cfg, layer_idx=0).eval()
    cross = getattr(block, "crossattention", None)
    if not isinstance(cross, classes["GPT2Attention"]):
        return ["GPT2Block(add_cross_attention=True).crossattention is not a GPT2Attention"]
    wanted = INTERNALS["transformers.models.gpt2.modeling_gpt2"]["GPT2Attention"][2]
    if missing := [a for a in wanted if not hasattr(cross, a)]:
        return [f"GPT2Attention instances have no {', '.join(missing)}"]
    with torch.no_grad():
        for p in (cross.q_attn.bias, cross.c_attn.bias, cross.c_proj.bias):
            p.normal_(generator=gen)  # non-zero: the key bias must cancel in softmax, the value bias must not
        images = torch.randn(2, 7, 16, generator=gen)  # (B, N, C)
        for beams, tgt_len in ((1, 1), (3, 1), (3, 2)):
            x = images.repeat_interleave(beams, dim=0)  # as generate expands it
            h = torch.randn(2 * beams, tgt_len, 16, generator=gen)
            ref = block(h, encoder_hidden_states=x)
            tokens = _ImageTokens()
            tokens.pair = (x, images)
            cross.forward = functools.partial(_cross_attention_on_image_tokens, cross, tokens, _head_weights(cross))
            try:
                got = block(h, encoder_hidden_states=x)
            finally:
                del cross.forward
            if not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
                problems.append(f"GPT2Block cross-attention on X ({beams} beams, {tgt_len} tokens) no longer equals")
                break
        # the expansion generate does: encoder_outputs (B, ...) -> (B * k, ...), rows of an image adjacent
        tokens = _ImageTokens()
        eo = BaseModelOutput(last_hidden_state=images)
        ids = torch.zeros(2, 1, dtype=torch.long)
        _expand_remembering_images(
            functools.partial(GenerationMixin._expand_inputs_for_generation, None),
            tokens,
            expand_size=3,
            is_encoder_decoder=True,
            input_ids=ids,
            encoder_outputs=eo,
        )
        expanded, seen = tokens.pair or (None, None)
        if seen is not images or not torch.equal(expanded, images.repeat_interleave(3, dim=0)):
            problems.append("GenerationMixin._expand_inputs_for_generation: encoder_outputs not repeat_interleaved")
    return problems


# INTERNALS as the shared checker reads it: (method, parameters) per class
_METHODS = {
    module: {cls: (method, params) for cls, (method, params, _) in wanted.items()}
    for module, wanted in INTERNALS.items()
}


@functools.lru_cache(maxsize=1)
def _problems() -> tuple[str, ...]:
    return _shared.check_internals(_METHODS, _check_tiny_modules, "tiny GPT-2 modules")


def transformers_internals_problems() -> list[str]:
    """What no longer matches the transformers internals the fast path patches (empty: all as written for).

    Checked once per process: class, method and parameter names (`INTERNALS`), the attributes the patched forwards
    read, and that each patched forward equals transformers' on a tiny random module.
    """
    return list(_problems())


def internals_message(problems: list[str]) -> str:
    return _shared.changed_internals_message(
        "ViT-GPT2 internals vlgen's fast path patches",
        WRITTEN_FOR_TRANSFORMERS,
        "vlgen/captioning/vit_gpt2_fast.py",
        problems,
    )


def fast_path_usable(fast_path: bool | None = None) -> bool:
    """Whether a ViT-GPT2 captioner should use `fast_generation`: enabled (argument / `$VLGEN_VIT_GPT2_FAST_PATH`)
    and transformers' internals as the patches expect. If they are not, warns once and answers False: captions
    then come from plain transformers, only slower."""
    return _shared.usable(fast_path_enabled(fast_path), transformers_internals_problems, internals_message, ENV_VAR)
