"""The published architectures (SDXL base, SD 1.5, FLUX.1-dev, BLIP-base, ViT-GPT2, Florence-2-base) at real size,
random weights.

SDXL, SD 1.5 and FLUX.1-dev run on the meta device: shapes flow through the real modules without allocating
10-70 GB.
The captioners run on CPU for real: random weights, one image, a few tokens.
"""

import pytest
import torch
from PIL import Image

from vlgen.errors import ConfigError
from vlgen.testing.published import (
    PUBLISHED_MODELS,
    published_config,
    published_flux_pipeline,
    published_model,
    published_sd15_pipeline,
    published_sdxl_pipeline,
)


def test_stored_configs_are_the_published_ones():
    for name in PUBLISHED_MODELS:
        assert "_source" not in published_config(name)
    unet = published_config("sdxl-base/unet")
    assert (unet["sample_size"], unet["block_out_channels"]) == (128, [320, 640, 1280])
    assert (unet["transformer_layers_per_block"], unet["attention_head_dim"]) == ([1, 2, 10], [5, 10, 20])
    assert (unet["cross_attention_dim"], unet["addition_time_embed_dim"]) == (2048, 256)
    te1, te2 = published_config("sdxl-base/text_encoder"), published_config("sdxl-base/text_encoder_2")
    assert te1["hidden_size"] + te2["hidden_size"] == unet["cross_attention_dim"]  # 768 + 1280
    assert te2["projection_dim"] + 6 * unet["addition_time_embed_dim"] == unet["projection_class_embeddings_input_dim"]
    assert published_config("blip-base")["vision_config"]["image_size"] == 384
    florence = published_config("florence-2-base")
    # DaViT's last stage (1024) is projected to the BART width; <image> sits inside the padded vocabulary.
    assert florence["vision_config"]["projection_dim"] == florence["text_config"]["d_model"] == 768
    assert florence["image_token_id"] == 51289 < florence["text_config"]["vocab_size"] == 51328
    with pytest.raises(ConfigError, match="sdxl-base/unet"):
        published_config("sdxl-turbo")


def test_stored_sd15_and_flux_configs_fit_together():
    unet, te = published_config("sd15/unet"), published_config("sd15/text_encoder")
    assert unet["cross_attention_dim"] == te["hidden_size"] == 768 and "addition_embed_type" not in unet
    assert (unet["in_channels"], unet["out_channels"], unet["sample_size"]) == (4, 4, 64)  # 512 px
    flux, vae = published_config("flux-dev/transformer"), published_config("flux-dev/vae")
    t5, clip = published_config("flux-dev/text_encoder_2"), published_config("flux-dev/text_encoder")
    assert flux["in_channels"] == 4 * vae["latent_channels"] == 64  # 16 channels packed 2x2
    assert flux["joint_attention_dim"] == t5["d_model"] == 4096 and flux["pooled_projection_dim"] == clip["hidden_size"]
    assert (vae["scaling_factor"], vae["shift_factor"], vae["use_quant_conv"]) == (0.3611, 0.1159, False)
    assert (t5["d_ff"], t5["num_layers"], t5["num_heads"], t5["d_kv"], t5["vocab_size"]) == (10240, 24, 64, 64, 32128)
    # Schedulers: the tiny pipelines are built from these two.
    assert published_model("sd15/scheduler").config.skip_prk_steps is True
    sched = published_model("flux-dev/scheduler").config
    assert (sched.shift, sched.use_dynamic_shifting, sched.base_shift, sched.max_shift) == (3.0, True, 0.5, 1.15)


@pytest.mark.slow
def test_sd15_shape_plumbing_on_meta():
    pipe = published_sd15_pipeline(device="meta")
    assert sum(p.numel() for p in pipe.unet.parameters()) == pytest.approx(860e6, rel=0.01)  # 859.5M
    assert pipe.unet.config.cross_attention_dim == 768 and pipe.unet.config.in_channels == 4
    assert pipe.vae_scale_factor == 8 and pipe.vae.config.scaling_factor == 0.18215  # the class default
    meta = torch.device("meta")
    prompt_embeds, negative_embeds = pipe.encode_prompt(
        "a red circle", device=meta, num_images_per_prompt=1, do_classifier_free_guidance=True
    )
    assert prompt_embeds.shape == negative_embeds.shape == (1, 77, 768)  # last hidden states of CLIP ViT-L
    latents = torch.empty(2, 4, 64, 64, device=meta)  # CFG batch at 512 px
    with torch.no_grad():
        noise_pred = pipe.unet(
            latents, torch.tensor(999, device=meta), encoder_hidden_states=torch.cat([negative_embeds, prompt_embeds])
        ).sample
        image = pipe.vae.decode(latents[:1] / pipe.vae.config.scaling_factor).sample
    assert noise_pred.shape == (2, 4, 64, 64) and noise_pred.device.type == "meta"
    assert image.shape == (1, 3, 512, 512)


@pytest.mark.slow
def test_flux_dev_shape_plumbing_on_meta():
    pipe = published_flux_pipeline(device="meta")
    transformer = pipe.transformer
    assert sum(p.numel() for p in transformer.parameters()) == pytest.approx(11.9e9, rel=0.01)  # 11.90B
    assert sum(p.numel() for p in pipe.text_encoder_2.parameters()) == pytest.approx(4.76e9, rel=0.01)  # T5-XXL enc.
    assert (len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)) == (19, 38)
    config = transformer.config
    assert (config.in_channels, config.joint_attention_dim, config.pooled_projection_dim) == (64, 4096, 768)
    assert config.guidance_embeds is True and pipe.vae_scale_factor == 8
    meta = torch.device("meta")

    # Prompt -> T5-XXL's last hidden states (512 tokens) as text tokens, CLIP ViT-L's pooled output as a vector.
    prompt_embeds, pooled, txt_ids = pipe.encode_prompt("a red circle", None, device=meta, max_sequence_length=512)
    assert prompt_embeds.shape == (1, 512, 4096) and pooled.shape == (1, 768) and txt_ids.shape == (512, 3)

    # 1024 px -> 128x128 latents of 16 channels -> 64x64 packed tokens of 16 x 2 x 2.
    latents = torch.empty(1, 16, 128, 128, device=meta)
    packed = pipe._pack_latents(latents, 1, 16, 128, 128)
    img_ids = pipe._prepare_latent_image_ids(1, 64, 64, meta, torch.float32)
    assert packed.shape == (1, 4096, 64) and img_ids.shape == (4096, 3)
    with torch.no_grad():
        noise_pred = transformer(
            hidden_states=packed,
            timestep=torch.full((1,), 1.0, device=meta),
            guidance=torch.full((1,), 3.5, device=meta),
            pooled_projections=pooled,
            encoder_hidden_states=prompt_embeds,
            txt_ids=txt_ids,
            img_ids=img_ids,
        ).sample
        unpacked = pipe._unpack_latents(noise_pred, 1024, 1024, pipe.vae_scale_factor)
        image = pipe.vae.decode(unpacked / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor).sample
    assert noise_pred.shape == (1, 4096, 64) and noise_pred.device.type == "meta"
    assert unpacked.shape == (1, 16, 128, 128) and image.shape == (1, 3, 1024, 1024)


@pytest.mark.slow
def test_sdxl_base_shape_plumbing_on_meta():
    pipe = published_sdxl_pipeline(device="meta")
    assert sum(p.numel() for p in pipe.unet.parameters()) == pytest.approx(2.567e9, rel=0.01)
    assert pipe.vae_scale_factor == 8
    meta = torch.device("meta")

    # Prompt -> two text encoders -> penultimate hidden states concatenated (768 + 1280), pooled from te2.
    prompt_embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
        "a red circle", device=meta, num_images_per_prompt=1, do_classifier_free_guidance=True
    )
    assert prompt_embeds.shape == negative_embeds.shape == (1, 77, 2048)
    assert pooled.shape == negative_pooled.shape == (1, 1280)

    # 6 micro-conditioning ids (original size, crop, target size); the pipeline checks 1280 + 6 x 256 == 2816.
    time_ids = pipe._get_add_time_ids(
        (1024, 1024), (0, 0), (1024, 1024), dtype=prompt_embeds.dtype, text_encoder_projection_dim=1280
    )
    assert time_ids.shape == (1, 6)
    assert pipe.unet.add_embedding.linear_1.in_features == 2816

    latents = torch.empty(2, 4, 128, 128, device=meta)  # CFG batch at 1024 px
    with torch.no_grad():
        noise_pred = pipe.unet(
            latents,
            torch.tensor(999, device=meta),
            encoder_hidden_states=torch.cat([negative_embeds, prompt_embeds]),
            added_cond_kwargs={
                "text_embeds": torch.cat([negative_pooled, pooled]),
                "time_ids": time_ids.to(meta).repeat(2, 1),
            },
        ).sample
        image = pipe.vae.decode(latents[:1] / pipe.vae.config.scaling_factor).sample
    assert noise_pred.shape == (2, 4, 128, 128) and noise_pred.device.type == "meta"
    assert image.shape == (1, 3, 1024, 1024)


@pytest.mark.slow
def test_blip_base_captions_one_image_on_cpu():
    from vlgen.testing.blip import blip_processor

    torch.manual_seed(0)
    model = published_model("blip-base", device="cpu")
    # 224M unique parameters (the hub's 990 MB file also stores the tied 30524 x 768 LM head: 247M).
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(224e6, rel=0.01)
    processor = blip_processor(image_size=384)
    inputs = processor(images=Image.new("RGB", (500, 375), (30, 120, 200)), return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 384, 384)
    with torch.no_grad():
        image_embeds = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
        ids = model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=4)
    assert image_embeds.shape == (1, 577, 768)  # (384/16)^2 patches + [CLS]
    assert ids.shape == (1, 5) and ids[0, 0].item() == 30522  # [DEC] + 4 tokens
    assert int(ids.max()) < 30524
    # The same model through vlgen's captioner (SDPA vision attention, beam search, decoding).
    from vlgen.captioning.blip import BlipCaptioner

    captions = BlipCaptioner(model.eval(), processor).generate([Image.new("RGB", (500, 375))] * 2, num_beams=2,
                                                               max_new_tokens=4)  # fmt: skip
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


@pytest.mark.slow
def test_vit_gpt2_captions_one_image_on_cpu():
    from vlgen.testing.vit_gpt2 import vit_image_processor

    torch.manual_seed(0)
    model = published_model("vit-gpt2", device="cpu")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(239e6, rel=0.03)
    assert model.config.decoder_start_token_id == model.config.pad_token_id == 50256
    pixel_values = vit_image_processor(image_size=224)(images=Image.new("RGB", (320, 240)), return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        encoded = model.encoder(pixel_values=pixel_values).last_hidden_state
        ids = model.generate(pixel_values, max_new_tokens=4, min_new_tokens=4)
    assert encoded.shape == (1, 197, 768)  # (224/16)^2 patches + [CLS]
    assert ids.shape == (1, 5) and ids[0, 0].item() == 50256


@pytest.mark.slow
def test_florence2_base_captions_and_trains_through_the_captioner_on_cpu():
    """Florence-2-base at its published size (0.23B) through vlgen's vision-language captioner: caption at 768 px,
    then the training batch, loss and backward (at 256 px: a backward at 768 px takes a minute on CPU)."""
    from vlgen.captioning.vlm import VisionLanguageCaptioner
    from vlgen.testing.florence2 import florence2_processor

    torch.manual_seed(0)
    model = published_model("florence-2-base", device="cpu")
    # 231.4M: DaViT 90.4M + BART-base 140.2M (the tied 51328 x 768 embedding counted once) + projector.
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(231.4e6, rel=0.005)
    assert sum(p.numel() for p in model.model.vision_tower.parameters()) == pytest.approx(90.4e6, rel=0.005)
    # The real BPE vocabulary is not available offline: the tiny BART tokenizer's ids are valid inputs of the
    # real-size embedding, and every shape after the tokenizer is the real one.
    processor = florence2_processor(image_size=768)
    model.config.image_token_id = processor.tokenizer.image_token_id
    captioner = VisionLanguageCaptioner(model, processor)
    assert captioner.prompt == "<CAPTION>" and captioner.input_size == (768, 768)
    image = Image.new("RGB", (500, 375), (30, 120, 200))
    inputs = captioner._inputs([image], captioner.prompt)
    assert inputs["pixel_values"].shape == (1, 3, 768, 768)
    assert int((inputs["input_ids"] == processor.tokenizer.image_token_id).sum()) == 577  # 24 x 24 + 1 temporal
    rows = captioner.caption_rows([image], max_new_tokens=4)
    assert len(rows) == 1 and isinstance(rows[0]["caption"], str)

    small = VisionLanguageCaptioner(model, florence2_processor(image_size=256))
    batch = small.collate([image, image], ["a blue square", "a photo of a blue square at dusk"], max_length=16)
    assert batch["labels"][0, 0].item() == 0 and (batch["labels"][0] == -100).any()  # <s> first, padding ignored
    model.train()
    loss = small.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and 9.0 < loss.item() < 12.5  # about ln(51328) = 10.8 at random weights
    assert model.model.vision_tower.convs[0].conv.weight.grad is not None  # the vision tower trains too
