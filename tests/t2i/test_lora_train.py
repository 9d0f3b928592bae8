"""`vlgen train lora` on tiny SDXL (CPU): it learns, and what it saves is what diffusers and ComfyUI load."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from t2ihelpers import TRIGGER, lora_config

from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME


def _images(pipe, prompt: str = TRIGGER, seed: int = 7) -> np.ndarray:
    for m in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2, pipe.vae):
        m.eval()
    g = torch.Generator().manual_seed(seed)
    return pipe(prompt, num_inference_steps=3, generator=g, output_type="np").images  # (1, 64, 64, 3)


def _fresh(base, vae):
    from vlgen.t2i.generate import load_pipeline

    return load_pipeline(str(base), str(vae), device="cpu")


def test_training_lowers_the_loss_on_a_fixed_set(trained):
    _, out, before, after = trained
    assert after < before * 0.95, (before, after)  # measured: 1.126 -> 1.021
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)


def test_outputs_of_a_run(trained):
    _, out, *_ = trained
    for name in ("README.md", "config.yaml", "history.csv", "curves.png", "samples.png", "train_summary.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "validation" / "final").iterdir()) == ["0.png", "1.png"]
    card = (out / "README.md").read_text()
    assert "instance_prompt: a 3D icon in the style of TOK" in card
    assert "![samples](samples.png)" in card and "snr_gamma" in card and KOHYA_WEIGHT_NAME in card


def test_diffusers_lora_keys_reload_exactly_and_change_the_output(trained, tiny_sdxl_dir, tiny_sdxl_vae_dir):
    trainer, out, *_ = trained
    sd = load_file(str(out / DIFFUSERS_WEIGHT_NAME))
    assert sd and all(k.startswith("unet.") for k in sd)
    assert any(".lora.down.weight" in k for k in sd) and any(".lora.up.weight" in k for k in sd)
    assert all(v.dtype == torch.float32 for v in sd.values())

    trained_out = _images(trainer.pipeline())
    base = _fresh(tiny_sdxl_dir, tiny_sdxl_vae_dir)
    base_out = _images(base)
    base.load_lora_weights(out)  # the directory, as users load it
    reloaded = _images(base)
    np.testing.assert_array_equal(reloaded, trained_out)
    assert np.abs(reloaded - base_out).max() > 1e-3  # the LoRA does something


def test_kohya_export_loads_through_diffusers_kohya_loader(trained, tiny_sdxl_dir, tiny_sdxl_vae_dir):
    _, out, *_ = trained
    path = out / KOHYA_WEIGHT_NAME
    sd = load_file(str(path))
    modules = {k.split(".")[0] for k in sd}
    assert all(m.startswith("lora_unet_") and "." not in m for m in modules)
    for m in modules:
        assert sd[f"{m}.alpha"].ndim == 0 and float(sd[f"{m}.alpha"]) == 4.0  # lora_alpha = rank
        assert sd[f"{m}.lora_down.weight"].shape[0] == 4 and sd[f"{m}.lora_up.weight"].shape[1] == 4
    assert "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q" in modules
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["ss_network_dim"] == "4"

    a = _fresh(tiny_sdxl_dir, tiny_sdxl_vae_dir)
    a.load_lora_weights(out, weight_name=DIFFUSERS_WEIGHT_NAME)
    b = _fresh(tiny_sdxl_dir, tiny_sdxl_vae_dir)
    b.load_lora_weights(out, weight_name=KOHYA_WEIGHT_NAME)  # diffusers detects lora_unet_ keys and converts
    np.testing.assert_allclose(_images(b), _images(a), atol=1e-5)


def test_text_encoder_lora_trains_saves_and_reloads(icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path):
    from vlgen.t2i.lora_trainer import LoraTrainer

    cfg = lora_config(
        icons, tmp_path / "te", tiny_sdxl_dir, tiny_sdxl_vae_dir, max_train_steps=3, train_text_encoder=True,
        text_encoder_lr=1e-3, export_format="kohya", num_validation_images=0, gradient_checkpointing=True,
    )  # fmt: skip
    trainer = LoraTrainer(cfg)
    summary = trainer.train()
    assert summary["steps"] == 3 and np.isfinite(summary["final_train_loss"])
    sd = load_file(str(tmp_path / "te" / DIFFUSERS_WEIGHT_NAME))
    prefixes = {k.split(".")[0] for k in sd}
    assert prefixes == {"unet", "text_encoder", "text_encoder_2"}
    kohya = {k.split("_")[1] for k in load_file(str(tmp_path / "te" / KOHYA_WEIGHT_NAME))}
    assert kohya == {"unet", "te1", "te2"}
    trained_out = _images(trainer.pipeline())
    fresh = _fresh(tiny_sdxl_dir, tiny_sdxl_vae_dir)
    fresh.load_lora_weights(tmp_path / "te")
    np.testing.assert_array_equal(_images(fresh), trained_out)


def test_text_encoder_lora_does_not_depend_on_transformers_peft_version_gate(
    icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, monkeypatch
):
    """transformers' adapter methods refuse to run unless peft is new enough for them (5.24: peft >= 0.22,
    unreleased): text-encoder LoRA goes through peft's API, so it trains and saves whatever that gate says."""
    import transformers.integrations.peft as hf_peft

    from vlgen.t2i.lora_trainer import LoraTrainer

    def gate(*args, **kwargs):
        raise ImportError("simulated: this transformers needs a newer peft")

    monkeypatch.setattr(hf_peft, "check_peft_version", gate)  # AttributeError here = transformers moved it
    cfg = lora_config(
        icons, tmp_path / "te", tiny_sdxl_dir, tiny_sdxl_vae_dir, max_train_steps=1, train_text_encoder=True,
        num_validation_images=0,
    )  # fmt: skip
    LoraTrainer(cfg).train()
    keys = load_file(str(tmp_path / "te" / DIFFUSERS_WEIGHT_NAME)).keys()
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("text_encoder_2.") for k in keys)


def test_prior_preservation_generates_class_images_once_and_trains(icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path):
    from vlgen.t2i.lora_trainer import LoraTrainer

    class_dir = tmp_path / "class"
    kw = dict(
        with_prior_preservation=True, class_prompt="a 3D icon", class_data_dir=str(class_dir), num_class_images=2,
        max_train_steps=2, num_validation_images=0, prior_loss_weight=1.0, sample_batch_size=2,
    )  # fmt: skip
    summary = LoraTrainer(lora_config(icons, tmp_path / "a", tiny_sdxl_dir, tiny_sdxl_vae_dir, **kw)).train()
    assert np.isfinite(summary["final_train_loss"])
    made = sorted(class_dir.iterdir())
    assert [p.name for p in made] == ["class-00000.png", "class-00001.png"]
    stamps = [p.stat().st_mtime_ns for p in made]
    trainer = LoraTrainer(lora_config(icons, tmp_path / "b", tiny_sdxl_dir, tiny_sdxl_vae_dir, **kw))
    trainer.setup()
    assert [p.stat().st_mtime_ns for p in sorted(class_dir.iterdir())] == stamps  # cached, not redrawn
    batch = trainer.data.batch([0, 1], torch.Generator().manual_seed(0))
    assert batch["latents"].shape == (4, 4, 8, 8)  # 2 instance + 2 class examples


def test_latent_and_text_caches_do_not_change_a_step(icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path):
    from vlgen.t2i.lora_trainer import LoraTrainer, step_generator

    losses = []
    for cache in (True, False):
        cfg = lora_config(
            icons, tmp_path / str(cache), tiny_sdxl_dir, tiny_sdxl_vae_dir, cache_latents=cache,
            cache_text_embeddings=cache, caption_column="text", random_flip=True, noise_offset=0.05,
        )  # fmt: skip
        trainer = LoraTrainer(cfg)
        trainer.setup()
        assert bool(trainer.data._latents) == cache and bool(trainer.data._text) == cache
        with torch.no_grad():
            losses.append([trainer.loss([i, i + 1], step_generator(0, 0, i)).item() for i in (0, 2, 4)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_nan_latents_stop_the_run_naming_the_fp16_vae(icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    from vlgen.t2i.lora_data import NonFiniteError
    from vlgen.t2i.lora_trainer import LoraTrainer

    real = AutoencoderKL.encode

    def nan_encode(self, x, *a, **k):
        out = real(self, x, *a, **k)
        out.latent_dist.parameters.fill_(float("nan"))
        return out

    monkeypatch.setattr(AutoencoderKL, "encode", nan_encode)
    trainer = LoraTrainer(lora_config(icons, tmp_path / "nan", tiny_sdxl_dir, tiny_sdxl_vae_dir, max_train_steps=1))
    with pytest.raises(NonFiniteError, match="sdxl-vae-fp16-fix") as e:
        trainer.train()
    assert "NaN/inf latents" in str(e.value) and "000000.png" in str(e.value)


LOCON = (
    "to_k,to_q,to_v,to_out.0,conv1,conv2,conv_shortcut,time_emb_proj,proj_in,proj_out,ff.net.0.proj,ff.net.2,"
    "conv_in,conv_out"
)


@pytest.fixture(scope="module")
def trained_locon(icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path_factory):
    """--lora-layers with every kohya-exportable conv/linear name (LoCon), 5 steps, kohya export too."""
    from vlgen.t2i.lora_trainer import LoraTrainer

    out = tmp_path_factory.mktemp("locon") / "run"
    cfg = lora_config(
        icons, out, tiny_sdxl_dir, tiny_sdxl_vae_dir, max_train_steps=5, learning_rate=2e-2, lora_layers=LOCON,
        export_format="kohya", num_validation_images=0,
    )  # fmt: skip
    trainer = LoraTrainer(cfg)
    trainer.train()
    return trainer, out


def test_lora_layers_with_conv_reload_exactly_in_both_formats(trained_locon, tiny_sdxl_dir, tiny_sdxl_vae_dir):
    trainer, out = trained_locon
    sd = load_file(str(out / DIFFUSERS_WEIGHT_NAME))
    adapted = {k.rsplit(".lora", 1)[0] for k in sd}
    assert "unet.down_blocks.0.resnets.0.conv1" in adapted and "unet.conv_in" in adapted
    assert sd["unet.down_blocks.0.resnets.0.conv1.lora_A.weight"].shape == (4, 32, 3, 3)  # (r, in, k, k)
    assert "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q" in adapted
    assert "lora_layers: " + LOCON in (out / "config.yaml").read_text()
    assert f"| `lora_layers` | {LOCON} |" in (out / "README.md").read_text()

    trained_out = _images(trainer.pipeline())
    a = _fresh(tiny_sdxl_dir, tiny_sdxl_vae_dir)
    base_out = _images(a)
    a.load_lora_weights(out)
    np.testing.assert_array_equal(_images(a), trained_out)  # conv and attention LoRA both loaded
    assert np.abs(trained_out - base_out).max() > 1e-3
    b = _fresh(tiny_sdxl_dir, tiny_sdxl_vae_dir)
    b.load_lora_weights(out, weight_name=KOHYA_WEIGHT_NAME)
    np.testing.assert_allclose(_images(b), trained_out, atol=1e-5)


@pytest.mark.parametrize(
    ("layers", "export", "message"),
    [
        ("to_q,conv9", "diffusers", "'conv9' matches no Linear or Conv2d module of the UNet; valid names include"),
        ("norm1", "diffusers", "'norm1' matches no Linear or Conv2d module"),  # GroupNorm: not adaptable
        (" , ", "diffusers", "--lora-layers is empty"),
        ("to_q,conv,linear_1", "kohya", "--export-format kohya supports --lora-layers to_k,"),
    ],
)
def test_bad_lora_layers_fail_before_training(
    icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, layers, export, message
):
    from vlgen.errors import ConfigError
    from vlgen.t2i.lora_trainer import LoraTrainer

    cfg = lora_config(
        icons, tmp_path / "o", tiny_sdxl_dir, tiny_sdxl_vae_dir, max_train_steps=1, lora_layers=layers,
        export_format=export,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        LoraTrainer(cfg).setup()
    if "valid names" in message:
        assert "conv1" in str(err.value) and "to_q" in str(err.value)
    assert not (tmp_path / "o" / DIFFUSERS_WEIGHT_NAME).exists()
