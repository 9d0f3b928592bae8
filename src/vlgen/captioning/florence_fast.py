"""Florence-2's fast generation path: its DaViT vision tower run by vlgen on CPU, for `generate` only.

`VisionLanguageCaptioner.generate` (Florence-2 only) runs `model.generate` inside `fast_generation(model)` when
the captioner's `fast_path` is on (the default). Inside the block, and only there, the vision tower
(`Florence2VisionBackbone`) has an instance-attribute `forward` (deleted on exit) that computes the same function
as transformers' from the same weights, arranged for a CPU (`davit_forward`):
- no fresh large allocations. transformers runs each op over the whole batch: the first stage's (B, 36864, 512)
  MLP activation is 75 MB per image at 768 px, and glibc maps every allocation over 32 MiB fresh from the kernel,
  so each one is paid again in first-touch page faults (eager, 1 thread, batches of 2-8: 0.8-1.4 s of system
  time and 530,000-790,000 minor faults per image, on top of 4.1-4.9 s of user time; the fresh outputs made the
  bias copies of `addmm`, GELU and the residual adds the slowest non-GEMM ops of its profile). Here the stage-1 map is
  run one image at a time and later stages in groups of images whose map fits `TILE_BYTES` (24 MiB: 2, 5 and 10
  images at 768 px), and every token-wise step (LayerNorm, the qkv / MLP / projection linears, GELU) in tiles of
  rows under `TILE_BYTES`: memory comes back from the heap (0.03-0.12 s of system time, 12,000-67,000 faults
  per image);
- residual adds folded into the GEMMs (`y += b; y.addmm_(h, W^T)`), GELU in place;
- window attention: LayerNorm and window partition per tile of whole windows, the output projection applied after
  the windows are merged back (a linear commutes with the token permutation), straight into the residual;
- channel ("group") attention without SDPA's math path: transformers calls SDPA with the N tokens as the head
  dimension (N = 36,864 in stage 1), which runs the math fallback with its scaling and copies of (B, g, c, N)
  tensors. Here the (g, c, c) scores are accumulated over token tiles (`baddbmm`), and the attention-weighted sum
  is folded into the output projection: out = V blockdiag(A_g^T) Wp^T + bp = V M + bp, with M (C, C) computed
  once per image (C c C FLOPs): one GEMM over the tokens instead of two, and no (B, g, c, N) copies.
What is left is the GEMMs themselves (~85% of the fast forward's time at 1 thread with the channel `baddbmm`s, at
about the 2048^2 `torch.mm` rate), SDPA over the 12 x 12 windows (~5%), the convolutions (~3%: depthwise 3 x 3 and
the patch embeddings), GELU, copies and LayerNorm (~5% together): 1.11x the matmul floor at 1 thread.
Off CPU, in other dtypes than fp32, with gradients, in training mode or when hidden states / attentions are asked
for, transformers' own forward runs. Outputs equal transformers' to fp32 rounding (the checker below and
tests/captioning/test_florence_fast_path.py compare them; captions identical, greedy and beam). Timings:
benchmarks/README.md, "Florence-2-base captioning".

Nothing is patched at import: the caller enters `fast_generation(model)` explicitly.

Switching back to plain transformers:
- per captioner: `VisionLanguageCaptioner(model, processor, fast_path=False)` or
  `VisionLanguageCaptioner.load(ref, fast_path=False)` / `load_captioner(ref, fast_path=False)`;
- per process: `VLGEN_FLORENCE_FAST_PATH=0` (also `false`, `no`, `off`), read when a Florence-2 captioner is
  created without an explicit `fast_path`; `1`/`true`/`yes`/`on` or unset: on.

The forward relies on private names of transformers' Florence-2 modules (`INTERNALS`).
`transformers_internals_problems()` checks them - names, signatures, attributes, and that the fast forward equals
transformers' on a tiny random tower (with window padding) - and returns what changed; a captioner whose
transformers fails the check warns and falls back to plain transformers. Written against transformers 5.24.
The switch, the checker loop and the fallback are shared by all fast paths: `vlgen.captioning.fast_path`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from vlgen.captioning import fast_path as _shared

ENV_VAR = "VLGEN_FLORENCE_FAST_PATH"
WRITTEN_FOR_TRANSFORMERS = "5.24"
_MODULE = "transformers.models.florence2.modeling_florence2"

# What the fast forward relies on: class -> (forward parameters that must exist, instance attributes it reads).
INTERNALS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # patched forward(hidden_states=pixel_values, **kwargs) -> BaseModelOutputWithPooling(last_hidden_state)
    "Florence2VisionBackbone": (("hidden_states",), ("convs", "blocks")),
    "Florence2VisionConvEmbed": (("hidden_states",), ("conv", "norm", "pre_norm")),
    "Florence2VisionBlock": (("hidden_states",), ("spatial_block", "channel_block")),
    "Florence2VisionSpatialBlock": (("hidden_states",), ("conv1", "norm1", "window_attn", "conv2", "norm2", "ffn")),
    "Florence2VisionChannelBlock": (("hidden_states",), ("conv1", "norm1", "channel_attn", "conv2", "norm2", "ffn")),
    "Florence2VisionWindowAttention": (("hidden_states",), ("qkv", "proj", "window_size", "num_heads", "scale")),
    "Florence2VisionChannelAttention": (("hidden_states",), ("qkv", "proj", "groups")),
    "Florence2VisionMLP": (("hidden_states",), ("fc1", "fc2", "activation_fn")),
    # where the tower is found: Florence2ForConditionalGeneration.model.vision_tower
    "Florence2Model": (("pixel_values",), ("vision_tower",)),
    "Florence2ForConditionalGeneration": (("pixel_values",), ("model",)),
}

# Largest fp32 intermediate of one tile (the (T, 4C) MLP activation, the (T, 3C) qkv of a window stripe, the
# (T, 2C) query/key rows): under glibc's largest dynamic mmap threshold (32 MiB), so after the first call tiles come
# from the heap instead of freshly mapped (and zeroed) pages. At one thread 4-32 MiB tiles ran the tower equally
# fast (4.33-4.40 s/image of CPU time); at two threads on a shared box the larger ones were faster (fewer, larger
# parallel regions: 32 MiB 5.9, 16 MiB 6.4, 8 MiB 6.9 s/image, best of 4).
TILE_BYTES = 24 << 20


def fast_path_enabled(fast_path: bool | None = None) -> bool:
    """`fast_path` if given, else `$VLGEN_FLORENCE_FAST_PATH` (unset: on). A value that is not a yes/no is refused."""
    return _shared.env_switch(ENV_VAR, fast_path)


def _tile_rows(n: int, width: int, tile_bytes: int, multiple: int = 1) -> int:
    """Rows per tile when `n` rows of `width` fp32 values are cut into tiles of at most `tile_bytes` (at least
    `multiple` rows, and a multiple of it), as evenly as possible: 2304 rows in budgets of 1024 -> 3 x 768, not
    1024 + 1024 + 256 (a small last GEMM runs slower)."""
    units = -(-n // multiple)  # whole units of `multiple` rows
    per = max(1, tile_bytes // (4 * width * multiple))
    tiles = -(-units // per)
    return -(-units // tiles) * multiple


def _linear_out(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x W^T + b written into `out` (a reused tile buffer: no fresh allocation)."""
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)


def _add_linear_(residual: torch.Tensor, x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> None:
    """residual += x W^T + b in place (`weight_t` = W^T): the residual add rides on the GEMM (beta = 1)."""
    if bias is not None:
        residual.add_(bias)
    residual.addmm_(x, weight_t)


def _conv_residual(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """x + conv(x) for x (B, H, W, C) contiguous (channels-last): oneDNN keeps channels-last, so the result is
    (B, H, W, C) contiguous again, a fresh tensor the block then updates in place."""
    y = conv(x.permute(0, 3, 1, 2))  # (B, C, H, W) view of channels-last memory
    return y.add_(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()


def _conv_embed(embed, x: torch.Tensor) -> torch.Tensor:
    """`Florence2VisionConvEmbed`: x (B, C, H, W) in any memory layout -> (B, H', W', C') contiguous."""
    if embed.pre_norm:
        x = embed.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    x = embed.conv(x).permute(0, 2, 3, 1)  # (B, H', W', C')
    if not embed.pre_norm:
        x = embed.norm(x)
    return x.contiguous()


def _mlp_half(conv, norm, ffn, x: torch.Tensor, tile_bytes: int) -> torch.Tensor:
    """y = x + conv(x); y + fc2(act(fc1(norm(y)))) - the second half of both block kinds, in row tiles."""
    y = _conv_residual(conv, x)  # (B, H, W, C)
    c = y.shape[-1]
    rows = y.view(-1, c)  # (B*N, C): the MLP is token-wise, so tiles may cross images
    hidden_dim = ffn.fc1.out_features
    step = _tile_rows(len(rows), hidden_dim, tile_bytes)
    buf = y.new_empty(step, hidden_dim)
    gelu = getattr(ffn.activation_fn, "act", None) is F.gelu  # GELUActivation (exact erf): done in place
    w2 = ffn.fc2.weight.t()  # (4C, C)
    for start in range(0, len(rows), step):
        tile = rows[start : start + step]  # (T, C) view into y
        hidden = _linear_out(buf[: len(tile)], norm(tile), ffn.fc1.weight, ffn.fc1.bias)  # (T, 4C)
        if gelu:
            torch.ops.aten.gelu_(hidden)
        else:
            hidden.copy_(ffn.activation_fn(hidden))
        _add_linear_(tile, hidden, w2, ffn.fc2.bias)
    return y


def _image_tiles(n_images: int, rows: int, row_floats: int, tile_bytes: int, multiple: int = 1):
    """(first image, last image + 1, first row, last row + 1) tiles of a (n_images, rows, ...) map whose rows hold
    `row_floats` fp32 values each: runs of whole images when one image fits `tile_bytes` (fewer, larger ops), else
    row ranges of one image (whole units of `multiple` rows: windows), both cut as evenly as possible."""
    rows_pad = -(-rows // multiple) * multiple
    per_image = 4 * rows_pad * row_floats
    if per_image <= tile_bytes:
        k = _tile_rows(n_images, rows_pad * row_floats, tile_bytes)  # images per tile
        for b0 in range(0, n_images, k):
            yield b0, min(b0 + k, n_images), 0, rows
        return
    step = _tile_rows(rows, row_floats, tile_bytes, multiple)
    for b in range(n_images):
        for r0 in range(0, rows, step):
            yield b, b + 1, r0, min(r0 + step, rows)


def _window_attention_half(block, x: torch.Tensor, tile_bytes: int) -> torch.Tensor:
    """`Florence2VisionSpatialBlock`'s first half: y = x + conv1(x); y + proj(window_attn(norm1(y))).

    Tiles of whole images or of whole window rows. transformers pads the normalised map with zeros at the bottom
    and right to whole windows and attends over the padding too (no mask); the tiles do the same.
    """
    y = _conv_residual(block.conv1, x)  # (B, H, W, C)
    attn = block.window_attn
    b_, h_, w_, c = y.shape
    ws, heads = attn.window_size, attn.num_heads
    w_pad = -(-w_ // ws) * ws
    nw = w_pad // ws
    wp = attn.proj.weight.t()  # (C, C)
    for b0, b1, r0, r1 in _image_tiles(b_, h_, 3 * c * w_pad, tile_bytes, multiple=ws):
        tile = y[b0:b1, r0:r1]  # (n, rows, W, C): contiguous (one image, or whole images)
        n, rows = b1 - b0, r1 - r0
        rows_pad = -(-rows // ws) * ws
        h = block.norm1(tile)
        if rows_pad != rows or w_pad != w_:
            h = F.pad(h, (0, 0, 0, w_pad - w_, 0, rows_pad - rows))
        # partition into windows: (n, rows_pad/ws, ws, nw, ws, C) -> (windows, ws*ws, C)
        h = h.view(n, rows_pad // ws, ws, nw, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        qkv = attn.qkv(h).view(len(h), ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=attn.scale)  # (windows, heads, ws*ws, d)
        # merge the windows back (the CPU kernel writes (windows, ws*ws, heads, d): transpose(1, 2) is free)
        o = o.transpose(1, 2).reshape(n, rows_pad // ws, nw, ws, ws, c).transpose(2, 3)
        o = o.reshape(n, rows_pad, w_pad, c)[:, :rows, :w_].reshape(n * rows * w_, c)  # (n*rows*W, C)
        _add_linear_(tile.view(n * rows * w_, c), o, wp, attn.proj.bias)
    return y


def _channel_attention_half(block, x: torch.Tensor, tile_bytes: int) -> torch.Tensor:
    """`Florence2VisionChannelBlock`'s first half: y = x + conv1(x); y + proj(channel_attn(norm1(y))).

    transformers' channel attention, per group g of c = C/groups channels, with q, k, v (c, N) of one image:
        A_g = softmax(q_g k_g^T / sqrt(N))  (c, c);   out[n, g*c + i] = sum_j A_g[i, j] v_g[j, n]
    followed by proj: out Wp^T + bp. Here: A accumulated over token tiles, then
        out Wp^T + bp = V M + bp,   M[g*c + j, :] = sum_i A_g[i, j] Wp^T[g*c + i, :]   (M = blockdiag(A_g^T) Wp^T)
    so each tile's V goes through one (C, C) GEMM per image straight into the residual.
    """
    y = _conv_residual(block.conv1, x)  # (B, H, W, C)
    attn = block.channel_attn
    b_, h_, w_, c = y.shape
    n_tok, groups = h_ * w_, attn.groups
    gc = c // groups
    w_qkv, b_qkv = attn.qkv.weight, attn.qkv.bias
    w_qk, w_v = w_qkv[: 2 * c], w_qkv[2 * c :]
    b_qk, b_v = (None, None) if b_qkv is None else (b_qkv[: 2 * c], b_qkv[2 * c :])
    wp = attn.proj.weight.t().reshape(groups, gc, c)  # (g, c, C): rows g*c + i of Wp^T
    rows = y.view(b_, n_tok, c)  # (B, N, C)
    h = block.norm1(rows)  # (B, N, C)
    tiles = list(_image_tiles(b_, n_tok, 2 * c, tile_bytes))
    scores = y.new_zeros(b_, groups, gc, gc)
    for b0, b1, r0, r1 in tiles:
        qk = F.linear(h[b0:b1, r0:r1], w_qk, b_qk)  # (n, T, 2C)
        for b in range(b0, b1):
            q = qk[b - b0, :, :c].view(-1, groups, gc)  # (T, g, c)
            k = qk[b - b0, :, c:].view(-1, groups, gc)
            scores[b].baddbmm_(q.permute(1, 2, 0), k.transpose(0, 1))  # += q_g^T k_g: (g, c, T) @ (g, T, c)
    a = (scores * n_tok**-0.5).softmax(dim=-1)  # (B, g, c, c), rows i, columns j
    m = torch.matmul(a.transpose(-1, -2), wp).view(b_, c, c)  # (B, g, c_j, C) -> (B, C, C)
    if attn.proj.bias is not None:
        rows.add_(attn.proj.bias)
    for b0, b1, r0, r1 in tiles:
        v = F.linear(h[b0:b1, r0:r1], w_v, b_v)  # (n, T, C)
        rows[b0:b1, r0:r1].baddbmm_(v, m[b0:b1])  # residual += V M, per image
    return y


def _stage_groups(maps: list[torch.Tensor], tile_bytes: int) -> list[list[torch.Tensor]]:
    """Consecutive per-image maps (1, H, W, C) in groups whose stacked map fits `tile_bytes`: every activation
    of a block is then at most a few times that (one image alone when it does not fit)."""
    per_image = 4 * maps[0].numel()
    k = max(1, tile_bytes // per_image)
    return [maps[i : i + k] for i in range(0, len(maps), k)]


def davit_forward(backbone, pixel_values: torch.Tensor, tile_bytes: int = TILE_BYTES) -> torch.Tensor:
    """`Florence2VisionBackbone`'s output (B, C, H/32, W/32) for `pixel_values` (B, 3, H, W), computed as the
    module docstring describes (eval, no grad). Strides are channels-last, as transformers' are. `tile_bytes`:
    the largest tile intermediate (tests use small ones to exercise the tiling on tiny maps)."""
    dtype = backbone.convs[0].conv.weight.dtype
    # one image per entry between stages; the first conv then writes channels-last
    maps = [im.contiguous(memory_format=torch.channels_last) for im in pixel_values.to(dtype).split(1)]
    for embed, blocks in zip(backbone.convs, backbone.blocks, strict=True):
        maps = [_conv_embed(embed, m) for m in maps]  # (1, H, W, C) each
        out = []
        for group in _stage_groups(maps, tile_bytes):  # 1 image per group at 768 px in stage 1, 2 / 5 / 10 later
            x = torch.cat(group) if len(group) > 1 else group[0]  # (n, H, W, C)
            for layer in blocks:
                spatial, channel = layer.spatial_block, layer.channel_block
                x = _window_attention_half(spatial, x, tile_bytes)
                x = _mlp_half(spatial.conv2, spatial.norm2, spatial.ffn, x, tile_bytes)
                x = _channel_attention_half(channel, x, tile_bytes)
                x = _mlp_half(channel.conv2, channel.norm2, channel.ffn, x, tile_bytes)
            out += x.permute(0, 3, 1, 2).split(1)  # (1, C, H, W) views of channels-last memory
        maps = out
    return torch.cat(maps)


def _applies(backbone, hidden_states: torch.Tensor, kwargs: dict) -> bool:
    """Where `davit_forward` replaces transformers' forward: fp32 on CPU, eval, no grad, a plain output asked for.
    (fp32 only: reduced-precision CPU runs keep transformers' own accumulation order, which this path changes.)"""
    plain = set(kwargs) <= _PLAIN_KWARGS and kwargs.get("return_dict") in (None, True)
    plain = plain and all(kwargs.get(k) in (None, False) for k in ("output_hidden_states", "output_attentions"))
    weight = backbone.convs[0].conv.weight
    return (
        plain
        and hidden_states.device.type == "cpu"
        and weight.dtype == torch.float32
        and hidden_states.dim() == 4
        and len(hidden_states) > 0
        and not backbone.training
        and not torch.is_grad_enabled()
    )


def _fast_backbone_forward(forward, backbone, hidden_states: torch.Tensor, **kwargs: Any):
    """The patched `Florence2VisionBackbone.forward`: `davit_forward` where it applies, else transformers'."""
    if not _applies(backbone, hidden_states, kwargs):
        return forward(hidden_states, **kwargs)
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    return BaseModelOutputWithPooling(last_hidden_state=davit_forward(backbone, hidden_states))


_PLAIN_KWARGS = {"output_hidden_states", "output_attentions", "return_dict"}


def _vision_tower(model: torch.nn.Module):
    inner = getattr(model, "model", model)  # Florence2ForConditionalGeneration.model, or a Florence2Model
    return getattr(inner, "vision_tower", None)


@contextmanager
def fast_generation(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, Florence-2's vision tower runs `davit_forward` on CPU (eval, no grad); on exit the
    model is plain transformers again. Only for generation: dropout and drop-path are off in eval anyway."""
    tower = _vision_tower(model)
    patch = tower is not None and "forward" not in tower.__dict__  # a nested or concurrent block keeps its own
    if patch:
        tower.forward = functools.partial(_fast_backbone_forward, type(tower).forward.__get__(tower), tower)
    try:
        yield
    finally:
        if patch:
            del tower.forward


def _check_tiny_tower(classes: dict[str, type]) -> list[str]:
    """Build a tiny random vision tower whose maps need window padding (a 5x5 map for window 2): the attributes
    the fast forward reads exist, and it equals transformers' output (fp32, eval, no grad)."""
    from transformers import Florence2VisionConfig

    config = Florence2VisionConfig(
        depths=[1, 1],
        embed_dim=[8, 16],
        num_heads=[2, 2],
        num_groups=[2, 4],
        patch_size=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[3, 1],
        patch_prenorm=[False, True],
        window_size=2,
        drop_path_rate=0.0,
    )
    tower = classes["Florence2VisionBackbone"](config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in tower.parameters():  # random biases and norms too: nothing may cancel by accident
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    layer = tower.blocks[0][0]
    parts = {
        "Florence2VisionConvEmbed": tower.convs[0],
        "Florence2VisionBlock": layer,
        "Florence2VisionSpatialBlock": layer.spatial_block,
        "Florence2VisionChannelBlock": layer.channel_block,
        "Florence2VisionWindowAttention": getattr(layer.spatial_block, "window_attn", None),
        "Florence2VisionChannelAttention": getattr(layer.channel_block, "channel_attn", None),
        "Florence2VisionMLP": getattr(layer.spatial_block, "ffn", None),
    }
    problems = []
    for name, module in parts.items():
        if not isinstance(module, classes[name]):
            problems.append(f"the tiny tower has no {name} where expected")
        elif missing := [a for a in INTERNALS[name][1] if not hasattr(module, a)]:
            problems.append(f"{name} instances have no {', '.join(missing)}")
    if problems:
        return problems
    pv = torch.randn(3, 3, 40, 36, generator=gen)  # stage maps 10x9 and 5x5: both padded to window 2
    with torch.no_grad():
        ref = tower(pv).last_hidden_state
        for tile_bytes in (TILE_BYTES, 1):  # one tile per map, and the smallest tiles (several per map)
            got = davit_forward(tower, pv, tile_bytes)
            if got.shape != ref.shape or not torch.allclose(got, ref, rtol=1e-4, atol=1e-4):
                err = (got - ref).abs().max().item() if got.shape == ref.shape else f"shape {tuple(got.shape)}"
                problems.append(f"Florence2VisionBackbone: the fast forward no longer equals transformers' ({err})")
                break
    return problems


@functools.lru_cache(maxsize=1)
def _problems() -> tuple[str, ...]:
    methods = {_MODULE: {cls: ("forward", params) for cls, (params, _) in INTERNALS.items()}}
    return _shared.check_internals(
        methods, _check_tiny_tower, "a tiny Florence-2 vision tower", outputs=("BaseModelOutputWithPooling",)
    )


def transformers_internals_problems() -> list[str]:
    """What no longer matches the transformers internals the fast path relies on (empty: all as written for).

    Checked once per process: class and parameter names (`INTERNALS`), the attributes the fast forward reads,
    and that it equals transformers' on a tiny random tower.
    """
    return list(_problems())


def internals_message(problems: list[str]) -> str:
    return _shared.changed_internals_message(
        "Florence-2 internals vlgen's fast path relies on",
        WRITTEN_FOR_TRANSFORMERS,
        "vlgen/captioning/florence_fast.py",
        problems,
    )


def fast_path_usable(fast_path: bool | None = None) -> bool:
    """Whether a Florence-2 captioner should use `fast_generation`: enabled (argument / `$VLGEN_FLORENCE_FAST_PATH`)
    and transformers' internals as the fast forward expects. If they are not, warns once and answers False:
    captions then come from plain transformers, only slower."""
    return _shared.usable(fast_path_enabled(fast_path), transformers_internals_problems, internals_message, ENV_VAR)


__all__ = [
    "ENV_VAR",
    "INTERNALS",
    "davit_forward",
    "fast_generation",
    "fast_path_enabled",
    "fast_path_usable",
    "transformers_internals_problems",
]
