"""FLUX.1 (Black Forest Labs 2024): `FluxPipeline`, black-forest-labs/FLUX.1-dev and FLUX.1-schnell.

A FluxTransformer2DModel (19 double-stream blocks, image and text tokens with separate weights, then 38
single-stream blocks over both) on 16-channel latents packed into 2x2 patches: (B, 16, h, w) ->
(B, h/2 * w/2, 64), with (h/2 * w/2, 3) position ids for RoPE. Conditioning: T5-XXL's last hidden states
(B, max_sequence_length, 4096) as the text tokens and CLIP ViT-L's pooled output (B, 768); [dev] is
guidance-distilled and also takes the guidance scale as an input (`guidance_embeds`). Trained with flow
matching (vlgen.t2i.objectives), as diffusers' train_dreambooth_lora_flux.py.

Kohya's (= BFL's original) layout names the fused projections: `double_blocks_N_img_attn_qkv` holds
to_q, to_k, to_v in one Linear, and `single_blocks_N_linear1` holds to_q, to_k, to_v and proj_mlp. A LoRA
trained on the separate diffusers projections is written there as one fused LoRA of rank r x 3 (or x 4):
lora_down stacks the parts' A (zeros for a part not trained) and lora_up is block-diagonal in their B,
which is exactly the sum of the separate LoRAs; diffusers' `_convert_kohya_flux_lora_to_diffusers` detects
the block-diagonal form and splits it back losslessly. alpha is multiplied by the number of parts so that
alpha / rank - the scale every loader applies - stays peft's lora_alpha / r.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from vlgen.errors import ConfigError
from vlgen.t2i.families.base import GenerationDefaults, Prediction, T2IFamily

# diffusers' train_dreambooth_lora_flux.py default targets: every attention projection and feed-forward of the
# double-stream blocks; "attn.to_k" etc. also match the single-stream blocks' q/k/v (peft matches suffixes).
FLUX_TARGET_MODULES = (
    "attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
    "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
)  # fmt: skip

# diffusers module path -> (kohya module name, index of the part inside a fused Linear, number of parts)
_DOUBLE = {
    "attn.to_q": ("img_attn_qkv", 0, 3), "attn.to_k": ("img_attn_qkv", 1, 3), "attn.to_v": ("img_attn_qkv", 2, 3),
    "attn.add_q_proj": ("txt_attn_qkv", 0, 3), "attn.add_k_proj": ("txt_attn_qkv", 1, 3),
    "attn.add_v_proj": ("txt_attn_qkv", 2, 3), "attn.to_out.0": ("img_attn_proj", 0, 1),
    "attn.to_add_out": ("txt_attn_proj", 0, 1), "ff.net.0.proj": ("img_mlp_0", 0, 1), "ff.net.2": ("img_mlp_2", 0, 1),
    "ff_context.net.0.proj": ("txt_mlp_0", 0, 1), "ff_context.net.2": ("txt_mlp_2", 0, 1),
    "norm1.linear": ("img_mod_lin", 0, 1), "norm1_context.linear": ("txt_mod_lin", 0, 1),
}  # fmt: skip
_SINGLE = {
    "attn.to_q": ("linear1", 0, 4), "attn.to_k": ("linear1", 1, 4), "attn.to_v": ("linear1", 2, 4),
    "proj_mlp": ("linear1", 3, 4), "proj_out": ("linear2", 0, 1), "norm.linear": ("modulation_lin", 0, 1),
}  # fmt: skip
_BLOCK = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")
KOHYA_FLUX_LAYERS = tuple(sorted(set(_DOUBLE) | set(_SINGLE)))


def kohya_flux_name(path: str) -> tuple[str, int, int] | None:
    """`transformer_blocks.3.attn.to_k` -> ("lora_unet_double_blocks_3_img_attn_qkv", 1, 3); None if kohya's
    layout has no such module."""
    m = _BLOCK.match(path)
    if not m:
        return None
    kind, i, rest = m.groups()
    table, prefix = (_DOUBLE, "double_blocks") if kind == "transformer_blocks" else (_SINGLE, "single_blocks")
    if rest not in table:
        return None
    name, part, parts = table[rest]
    return f"lora_unet_{prefix}_{i}_{name}", part, parts


def _part_out_features(name: str, part: int, in_features: int) -> int:
    """Output width of a fused part: q/k/v keep the block's width; the single blocks' proj_mlp is 4x (mlp_ratio)."""
    return 4 * in_features if name.endswith("linear1") and part == 3 else in_features


class FluxFamily(T2IFamily):
    name = "flux"
    pipeline_class = "FluxPipeline"
    denoiser_name = "transformer"
    denoiser_class = "FluxTransformer2DModel"
    denoiser_label = "Flux transformer"
    tokenizer_names = ("tokenizer", "tokenizer_2")
    text_encoder_names = ("text_encoder", "text_encoder_2")
    text_encoder_classes = ("CLIPTextModel", "T5EncoderModel")
    lora_text_encoders = ("text_encoder",)  # CLIP only, as diffusers' script: T5-XXL stays frozen
    default_lora_targets = FLUX_TARGET_MODULES
    kohya_layers = KOHYA_FLUX_LAYERS
    default_hub_id = "black-forest-labs/FLUX.1-dev"
    kohya_base_model_version = "flux1"
    modelspec_architecture = "flux-1-dev/lora"
    objective_kind = "flow_matching"
    min_resolution_multiple = 16  # 8x VAE, then 2x2 patches

    @staticmethod
    def is_schnell(denoiser_config: Any) -> bool:
        """schnell is timestep-distilled without a guidance input; dev has `guidance_embeds`."""
        return denoiser_config is not None and not denoiser_config.guidance_embeds

    def generation_defaults(self, denoiser_config: Any = None) -> GenerationDefaults:
        if self.is_schnell(denoiser_config):  # schnell: 4 steps, no classifier-free guidance (its model card)
            return GenerationDefaults(num_inference_steps=4, guidance_scale=0.0, resolution=1024)
        return GenerationDefaults(num_inference_steps=28, guidance_scale=3.5, resolution=1024)

    def licence_note(self, denoiser_config: Any = None, base: str = "") -> str | None:
        if self.is_schnell(denoiser_config):
            return "FLUX.1 [schnell] is released under the Apache-2.0 licence."
        return (
            "FLUX.1 [dev] is released under the FLUX.1 [dev] Non-Commercial License and is gated on the hub: "
            "this LoRA, and images made with it, fall under its terms (no commercial use without a licence from "
            "Black Forest Labs)."
        )

    def training_notes(self, denoiser_config: Any = None, base: str = "") -> list[str]:
        if self.is_schnell(denoiser_config):
            return [
                "FLUX.1 [schnell] is timestep-distilled to draw in 1-4 steps. LoRA training with the ordinary "
                "flow-matching loss works against that distillation: expect softer images at 4 steps, and more "
                "steps to recover. Train on FLUX.1 [dev] for quality."
            ]
        return []

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if not 1 <= cfg.max_sequence_length <= 512:
            raise ConfigError(
                f"--max-sequence-length must be between 1 and 512 for Flux's T5, got {cfg.max_sequence_length}"
            )

    def load_tokenizer(self, path: Path, name: str) -> Any:
        from transformers import CLIPTokenizer, T5TokenizerFast

        return (CLIPTokenizer if name == "tokenizer" else T5TokenizerFast).from_pretrained(path, subfolder=name)

    def load_noise_scheduler(self, path: Path) -> Any:
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_pretrained(path, subfolder="scheduler")

    def tokenize(self, tokenizers, prompts, cfg=None):
        clip, t5 = tokenizers
        max_len = cfg.max_sequence_length if cfg is not None else 512
        clip_ids = clip(prompts, padding="max_length", max_length=clip.model_max_length, truncation=True,
                        return_tensors="pt").input_ids  # fmt: skip
        t5_ids = t5(prompts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt").input_ids
        return [clip_ids, t5_ids]  # (B, 77), (B, max_sequence_length)

    def encode(self, text_encoders, input_ids, grad=False):
        # FluxPipeline.encode_prompt: CLIP's pooled output, T5's last hidden states. Only CLIP can take LoRA.
        clip, t5 = text_encoders
        clip_ids, t5_ids = input_ids
        pooled = clip(clip_ids.to(clip.device), output_hidden_states=False).pooler_output  # (B, 768)
        with torch.no_grad():
            embeds = t5(t5_ids.to(t5.device), output_hidden_states=False)[0]  # (B, L, 4096)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def predict(self, denoiser, noisy: Prediction, cond, batch, cfg):
        from diffusers import FluxPipeline

        x = noisy.noisy  # (n, 16, h, w)
        n, c, h, w = x.shape
        dtype, dev = x.dtype, x.device
        config = getattr(denoiser, "module", denoiser).config  # DDP wraps the model
        embeds = cond["prompt_embeds"].to(dtype)  # (n, L, D)
        guidance = (
            torch.full((n,), cfg.guidance_scale, device=dev, dtype=torch.float32) if config.guidance_embeds else None
        )
        out = denoiser(
            hidden_states=FluxPipeline._pack_latents(x, n, c, h, w),  # (n, h/2 * w/2, 4c)
            timestep=noisy.timesteps.to(dtype) / 1000,  # the transformer multiplies by 1000 again
            guidance=guidance,
            pooled_projections=cond["pooled_prompt_embeds"].to(dtype),
            encoder_hidden_states=embeds,
            txt_ids=torch.zeros(embeds.shape[1], 3, device=dev, dtype=dtype),
            img_ids=FluxPipeline._prepare_latent_image_ids(n, h // 2, w // 2, dev, dtype),  # (h/2 * w/2, 3)
            return_dict=False,
        )[0]
        return FluxPipeline._unpack_latents(out, h, w, 1)  # (n, 16, h, w)

    def pipeline_call_kwargs(self, cfg=None) -> dict[str, Any]:
        return {"max_sequence_length": cfg.max_sequence_length} if cfg is not None else {}

    def native_resolution(self, pipe) -> int:
        return int(pipe.default_sample_size * pipe.vae_scale_factor)

    def save_lora_kwarg(self, component: str) -> str:
        return {"transformer": "transformer_lora_layers", "text_encoder": "text_encoder_lora_layers"}[component]

    def kohya_prefix(self, component: str) -> str:
        return {"transformer": "lora_unet_", "text_encoder": "lora_te1_"}[component]

    def check_kohya_paths(self, paths: list[str]) -> None:
        bad = [p for p in paths if kohya_flux_name(p) is None]
        if bad:
            raise ConfigError(
                f"--export-format kohya: kohya's Flux layout has no module for {bad[0]} "
                f"(adaptable there: {', '.join(KOHYA_FLUX_LAYERS)} inside the double/single blocks)"
            )

    def to_kohya(self, peft_sds, alphas):
        from vlgen.t2i.lora_export import kohya_plain

        out = kohya_plain({k: v for k, v in peft_sds.items() if k != "transformer"}, alphas, self.kohya_prefix)
        if "transformer" in peft_sds:
            out.update(fuse_flux_lora(peft_sds["transformer"], alphas["transformer"]))
        return out


def fuse_flux_lora(sd: dict[str, torch.Tensor], lora_alpha: float) -> dict[str, torch.Tensor]:
    """peft transformer LoRA (`transformer_blocks.0.attn.to_q.lora_A.weight` ...) -> kohya Flux keys, the
    q/k/v (+ proj_mlp) parts of a fused Linear written as one block-diagonal LoRA (module docstring)."""
    groups: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
    n_parts: dict[str, int] = {}
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in sd})
    for module in modules:
        kind_keys = {k.rsplit(".lora_", 1)[1] for k in sd if k.rsplit(".lora_", 1)[0] == module}
        if kind_keys != {"A.weight", "B.weight"}:
            raise ValueError(f"transformer module {module}: only plain LoRA (lora_A/lora_B) exports to kohya")
        mapped = kohya_flux_name(module)
        if mapped is None:
            raise ConfigError(f"--export-format kohya: kohya's Flux layout has no module for {module}")
        name, part, parts = mapped
        groups.setdefault(name, {})[part] = (sd[f"{module}.lora_A.weight"], sd[f"{module}.lora_B.weight"])
        n_parts[name] = parts
    out: dict[str, torch.Tensor] = {}
    for name, got in groups.items():
        k = n_parts[name]
        a0, b0 = next(iter(got.values()))
        r, in_features = a0.shape
        if k == 1:
            down, up = got[0]
        else:
            outs = [got[p][1].shape[0] if p in got else _part_out_features(name, p, in_features) for p in range(k)]
            down = torch.zeros(k * r, in_features, dtype=a0.dtype)  # (k r, in)
            up = torch.zeros(sum(outs), k * r, dtype=b0.dtype)  # (sum out_p, k r), block-diagonal
            row = 0
            for p in range(k):
                if p in got:
                    a, b = got[p]
                    down[p * r : (p + 1) * r] = a
                    up[row : row + outs[p], p * r : (p + 1) * r] = b
                row += outs[p]
        out[f"{name}.lora_down.weight"] = down.contiguous()
        out[f"{name}.lora_up.weight"] = up.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(lora_alpha) * k)  # alpha / (k r) == lora_alpha / r
    return out
