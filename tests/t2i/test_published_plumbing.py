"""SDXL base's published shapes (meta device, no weights) through the trainer's conditioning plumbing."""

from __future__ import annotations

import random

import torch

from vlgen.t2i.buckets import plan_crop
from vlgen.t2i.conditioning import encode_prompt, tokenize
from vlgen.t2i.lora_config import UNET_TARGET_MODULES


def test_sdxl_base_shapes_through_conditioning_and_lora():
    from peft import LoraConfig

    from vlgen.testing.published import published_sdxl_pipeline

    pipe = published_sdxl_pipeline(device="meta")
    ids = tokenize([pipe.tokenizer, pipe.tokenizer_2], ["a 3D icon in the style of TOK", "a 3D icon"])
    assert [i.shape for i in ids] == [(2, 77), (2, 77)]
    with torch.device("meta"):
        embeds, pooled = encode_prompt([pipe.text_encoder, pipe.text_encoder_2], [i.to("meta") for i in ids])
        assert embeds.shape == (2, 77, 2048) and pooled.shape == (2, 1280)  # 768 + 1280; bigG's projection

        # A 1024 x 1024 bucket from a 1536 x 1024 photo: real time ids, 128 x 128 latents.
        plan = plan_crop((1536, 1024), (1024, 1024), center_crop=True, rng=random.Random(0))
        assert plan.time_ids(False) == [1536, 1024, 256, 0, 1024, 1024]
        time_ids = torch.tensor([plan.time_ids(False), plan.time_ids(True)], dtype=torch.float32)
        unet = pipe.unet
        unet.add_adapter(
            LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=list(UNET_TARGET_MODULES))
        )
        # add_embedding sees pooled (1280) + 6 time ids x 256 Fourier features = 2816 inputs.
        assert unet.add_embedding.linear_1.in_features == 1280 + 6 * unet.config.addition_time_embed_dim == 2816
        latents = torch.empty(2, 4, 128, 128)
        out = unet(
            latents, torch.tensor([10, 900]), embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}
        )
    assert out.sample.shape == (2, 4, 128, 128)
    lora = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in n for n in lora)
    assert any("attn2.to_k.lora_A" in n for n in lora)  # cross-attention keys read the 2048-d text embeddings
    to_k = dict(unet.named_modules())["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"]
    assert to_k.base_layer.in_features == 2048
