"""A diffusers FluxTransformer2DModel state dict written back in Black Forest Labs' original single-file layout
(the keys of `flux1-dev.safetensors` / `flux1-schnell.safetensors`), for tests of single-file loading.

The inverse of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`, written from BFL's layout:
- embedders: `img_in` = x_embedder, `txt_in` = context_embedder, `time_in`/`vector_in`/`guidance_in` (in_layer,
  out_layer) = time_text_embed's timestep/text/guidance embedders (linear_1, linear_2);
- double blocks: one fused `qkv` per stream (q, k, v stacked on dim 0), `proj` = to_out / to_add_out, the RMS norm
  scales under `norm.query_norm`/`norm.key_norm`, `img_mlp.0/2` and `txt_mlp.0/2` = ff / ff_context, `img_mod.lin`
  and `txt_mod.lin` = norm1 / norm1_context;
- single blocks: `linear1` = q, k, v and proj_mlp stacked on dim 0, `linear2` = proj_out, `modulation.lin` = norm;
- `final_layer.linear` = proj_out; `final_layer.adaLN_modulation.1` = norm_out.linear with its two halves in BFL's
  order (shift, scale), diffusers keeping (scale, shift).
"""

from __future__ import annotations

import torch

EMBEDDERS = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
# per stream of a double block: BFL's name -> diffusers' (image stream, text stream)
DOUBLE = {
    "attn.proj": ("attn.to_out.0", "attn.to_add_out"),
    "mlp.0": ("ff.net.0.proj", "ff_context.net.0.proj"),
    "mlp.2": ("ff.net.2", "ff_context.net.2"),
    "mod.lin": ("norm1.linear", "norm1_context.linear"),
}
DOUBLE_QKV = (("attn.to_q", "attn.to_k", "attn.to_v"), ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"))
DOUBLE_NORMS = (("attn.norm_q", "attn.norm_k"), ("attn.norm_added_q", "attn.norm_added_k"))
SINGLE = {"linear2": "proj_out", "modulation.lin": "norm.linear"}
SINGLE_LINEAR1 = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")


def _blocks(sd: dict, prefix: str) -> list[int]:
    return sorted({int(k[len(prefix) :].split(".", 1)[0]) for k in sd if k.startswith(prefix)})


def flux_transformer_to_bfl(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL's single-file state dict of a diffusers Flux transformer state dict (every tensor used exactly once)."""
    sd = dict(sd)
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        return sd.pop(name)

    def linear(bfl: str, diffusers: str) -> None:
        for p in ("weight", "bias"):
            out[f"{bfl}.{p}"] = take(f"{diffusers}.{p}")

    def stacked(bfl: str, parts: tuple[str, ...]) -> None:
        for p in ("weight", "bias"):
            out[f"{bfl}.{p}"] = torch.cat([take(f"{part}.{p}") for part in parts], dim=0)

    for bfl, diffusers in EMBEDDERS.items():
        if f"{diffusers}.weight" in sd:  # no guidance embedder in schnell
            linear(bfl, diffusers)
    for i in _blocks(sd, "transformer_blocks."):
        src, dst = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for stream, prefix in enumerate(("img_", "txt_")):
            for bfl, names in DOUBLE.items():
                linear(dst + prefix + bfl, src + names[stream])
            stacked(dst + prefix + "attn.qkv", tuple(src + n for n in DOUBLE_QKV[stream]))
            q_norm, k_norm = DOUBLE_NORMS[stream]
            out[f"{dst}{prefix}attn.norm.query_norm.scale"] = take(f"{src}{q_norm}.weight")
            out[f"{dst}{prefix}attn.norm.key_norm.scale"] = take(f"{src}{k_norm}.weight")
    for i in _blocks(sd, "single_transformer_blocks."):
        src, dst = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for bfl, diffusers in SINGLE.items():
            linear(dst + bfl, src + diffusers)
        stacked(dst + "linear1", tuple(src + n for n in SINGLE_LINEAR1))
        out[f"{dst}norm.query_norm.scale"] = take(f"{src}attn.norm_q.weight")
        out[f"{dst}norm.key_norm.scale"] = take(f"{src}attn.norm_k.weight")
    for p in ("weight", "bias"):
        scale, shift = take(f"norm_out.linear.{p}").chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{p}"] = torch.cat([shift, scale], dim=0)
    assert not sd, f"diffusers keys without a BFL name: {sorted(sd)}"
    return {k: v.contiguous() for k, v in out.items()}
