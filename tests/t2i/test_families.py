"""The base-model families beside SDXL (vlgen.t2i.families): SD 1.5 and FLUX.1 on their tiny models (CPU).

Which family a base is, LoRA training on each (it learns; the files have the family's keys and reload in
diffusers), the kohya export (Flux's fused q/k/v), options a family refuses, the flow-matching objective and
generation with the family defaults. Tiny Flux runs at 64 px with a 16-token T5 sequence.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from t2ihelpers import TRIGGER, fixed_set_loss, lora_config

from vlgen.errors import ConfigError
from vlgen.t2i.lora_export import DIFFUSERS_WEIGHT_NAME, KOHYA_WEIGHT_NAME

MAX_SEQ = 16  # T5 tokens of a tiny-Flux prompt (FLUX.1-dev: 512)
FLUX_CALL = dict(height=64, width=64, max_sequence_length=MAX_SEQ)  # FluxPipeline's default is 1024 px
RANK = 4  # lora_config's default rank
# double-block modules only: diffusers' kohya converter hard-codes FLUX.1's single-block widths (test 5)
FLUX_DOUBLE_LAYERS = (
    "transformer_blocks.0.attn.to_q,transformer_blocks.0.attn.to_k,transformer_blocks.0.attn.add_v_proj,"
    "transformer_blocks.0.ff.net.2,transformer_blocks.0.attn.to_out.0"
)


def _image(pipe, **call) -> np.ndarray:
    """(1, 64, 64, 3) floats of the trigger prompt, 2 steps, a fixed seed."""
    for name in ("unet", "transformer", "text_encoder", "text_encoder_2", "vae"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).eval()
    g = torch.Generator().manual_seed(7)
    return pipe(TRIGGER, num_inference_steps=2, generator=g, output_type="np", **call).images


def _with_lora(base, lora=None, **call) -> np.ndarray:
    """The image of a freshly loaded base (vlgen's load_pipeline), with `lora` (a .safetensors file) applied."""
    from vlgen.t2i.generate import apply_lora, load_pipeline

    pipe = load_pipeline(str(base), device="cpu")
    if lora is not None:
        apply_lora(pipe, lora, 1.0)
    return _image(pipe, **call)


def _train(icons, out, base, measure_loss: bool = True, **kw):
    """(trainer, loss on a fixed set before, after) of one run; losses None unless `measure_loss`."""
    from vlgen.t2i.lora_trainer import LoraTrainer

    torch.set_num_threads(1)
    kw = {"num_validation_images": 1, **kw}
    trainer = LoraTrainer(lora_config(icons, out, base, None, **kw))  # the base's own VAE
    trainer.setup()
    before = fixed_set_loss(trainer) if measure_loss else None
    trainer.train()
    after = fixed_set_loss(trainer) if measure_loss else None
    return trainer, before, after


# ----------------------------------------------------------------------------------------------- 1. detection
def test_family_of_path_reads_model_index(tiny_sdxl_dir, tiny_sd15_dir, tiny_flux_dir, tiny_flux_schnell_dir):
    from vlgen.t2i.families import family_of_path

    got = {p: family_of_path(p).name for p in (tiny_sdxl_dir, tiny_sd15_dir, tiny_flux_dir, tiny_flux_schnell_dir)}
    assert list(got.values()) == ["sdxl", "sd15", "flux", "flux"]
    assert family_of_path(tiny_sdxl_dir, family="sd15").name == "sd15"  # --family wins over model_index.json


def test_family_of_path_without_model_index_or_with_an_unknown_name_names_the_option(tmp_path):
    from vlgen.t2i.families import family_of_path

    with pytest.raises(ConfigError, match="no model_index.json.*pass --family") as e:
        family_of_path(tmp_path)
    assert "sdxl, sd15, flux" in str(e.value)
    with pytest.raises(ConfigError, match="--family sd3: unknown text-to-image family; known: sdxl, sd15, flux"):
        family_of_path(tmp_path, family="sd3")


def test_family_hint_knows_the_default_hub_ids_without_network(tiny_sd15_dir, monkeypatch):
    import vlgen.hub
    from vlgen.t2i.families import family_hint

    def offline(*args, **kwargs):
        raise AssertionError("family_hint resolved a model")

    monkeypatch.setattr(vlgen.hub, "resolve_model", offline)
    hints = {
        "stable-diffusion-v1-5/stable-diffusion-v1-5": "sd15",
        "black-forest-labs/FLUX.1-dev": "flux",
        "black-forest-labs/FLUX.1-schnell": "flux",
        "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
        str(tiny_sd15_dir): "sd15",
    }
    assert {ref: family_hint(ref).name for ref in hints} == hints
    assert family_hint("someone/some-model") is None  # unknown: the trainer asks once the base is resolved
    assert family_hint("someone/some-model", family="flux").name == "flux"


# ----------------------------------------------------------------------------------------------- 2. SD 1.5
@pytest.fixture(scope="module")
def sd15_run(icons, tiny_sd15_dir, tmp_path_factory):
    """SD 1.5 with the text encoder and the kohya export, 10 steps: (trainer, out, loss before, loss after)."""
    out = tmp_path_factory.mktemp("sd15") / "run"
    trainer, before, after = _train(
        icons, out, tiny_sd15_dir, max_train_steps=10, learning_rate=2e-2, train_text_encoder=True,
        text_encoder_lr=2e-2, export_format="kohya",
    )  # fmt: skip
    return trainer, out, before, after


def test_sd15_lora_learns_and_writes_sd15_files(sd15_run):
    _, out, before, after = sd15_run
    assert after < before * 0.9, (before, after)  # measured: 1.140 -> 0.920
    prefixes = {k.split(".")[0] for k in load_file(str(out / DIFFUSERS_WEIGHT_NAME))}
    assert prefixes == {"unet", "text_encoder"}
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["family"] == "sd15" and summary["steps"] == 10
    card = (out / "README.md").read_text()
    assert "from diffusers import StableDiffusionPipeline" in card and "StableDiffusionXLPipeline" not in card
    assert "license: creativeml-openrail-m" in card and "CreativeML OpenRAIL-M" in card
    assert "num_inference_steps=50" in card  # SD 1.5's default in the snippet


def test_sd15_lora_reloads_exactly_and_changes_the_image(sd15_run, tiny_sd15_dir):
    trainer, out, *_ = sd15_run
    trained = _image(trainer.pipeline())
    reloaded = _with_lora(tiny_sd15_dir, out / DIFFUSERS_WEIGHT_NAME)
    np.testing.assert_array_equal(reloaded, trained)
    assert np.abs(reloaded - _with_lora(tiny_sd15_dir)).max() > 1e-3


# ----------------------------------------------------------------------------------------------- 3. Flux
@pytest.fixture(scope="module")
def flux_run(icons, tiny_flux_dir, tmp_path_factory):
    """FLUX.1-dev tiny, default targets + CLIP text encoder, 20 steps: (trainer, out, loss before, loss after)."""
    out = tmp_path_factory.mktemp("flux") / "run"
    trainer, before, after = _train(
        icons, out, tiny_flux_dir, snr_gamma=None, max_sequence_length=MAX_SEQ, max_train_steps=20,
        learning_rate=2e-2, train_text_encoder=True, text_encoder_lr=2e-2,
    )  # fmt: skip
    return trainer, out, before, after


def test_flux_lora_learns_and_adapts_the_transformer_and_clip_only(flux_run):
    _, out, before, after = flux_run
    assert after < before * 0.92, (before, after)  # measured: 1.481 -> 1.222
    sd = load_file(str(out / DIFFUSERS_WEIGHT_NAME))
    assert {k.split(".")[0] for k in sd} == {"transformer", "text_encoder"}  # T5 (text_encoder_2) stays frozen
    adapted = {k.rsplit(".lora", 1)[0] for k in sd}
    assert "transformer.transformer_blocks.0.attn.add_k_proj" in adapted
    assert "transformer.single_transformer_blocks.1.attn.to_q" in adapted  # "attn.to_q" matches single blocks too
    assert json.loads((out / "train_summary.json").read_text())["family"] == "flux"
    assert (out / "validation" / "final" / "0.png").is_file()


def test_flux_lora_reloads_exactly_and_changes_the_image(flux_run, tiny_flux_dir):
    trainer, out, *_ = flux_run
    trained = _image(trainer.pipeline(), **FLUX_CALL)
    reloaded = _with_lora(tiny_flux_dir, out / DIFFUSERS_WEIGHT_NAME, **FLUX_CALL)
    np.testing.assert_array_equal(reloaded, trained)
    assert np.abs(reloaded - _with_lora(tiny_flux_dir, **FLUX_CALL)).max() > 1e-3


def test_flux_dev_card_names_its_non_commercial_licence(flux_run):
    _, out, *_ = flux_run
    card = (out / "README.md").read_text()
    assert "license: other" in card and "FLUX.1 [dev] Non-Commercial License" in card
    assert "from diffusers import FluxPipeline" in card and "num_inference_steps=28" in card
    assert "distill" not in card


def test_flux_schnell_card_is_apache_and_warns_about_distillation(icons, tiny_flux_schnell_dir, tmp_path):
    out = tmp_path / "schnell"
    _train(
        icons, out, tiny_flux_schnell_dir, measure_loss=False, snr_gamma=None, max_sequence_length=MAX_SEQ,
        max_train_steps=1, num_validation_images=0,
    )  # fmt: skip
    card = (out / "README.md").read_text()
    assert "license: apache-2.0" in card and "Apache-2.0" in card and "Non-Commercial" not in card
    assert "timestep-distilled" in card and "num_inference_steps=4" in card


# ----------------------------------------------------------------------------------------------- 4. kohya
def test_sd15_kohya_export_reloads_like_the_diffusers_file(sd15_run, tiny_sd15_dir):
    _, out, *_ = sd15_run
    sd = load_file(str(out / KOHYA_WEIGHT_NAME))
    modules = {k.split(".")[0] for k in sd}
    assert {m.split("_")[1] for m in modules} == {"unet", "te"}  # SD 1.5: lora_unet_, lora_te_ (not te1)
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in modules
    assert all(m.startswith(("lora_unet_", "lora_te_text_model_encoder_layers_")) for m in modules)
    assert all(float(sd[f"{m}.alpha"]) == RANK for m in modules)
    kohya = _with_lora(tiny_sd15_dir, out / KOHYA_WEIGHT_NAME)
    np.testing.assert_array_equal(kohya, _with_lora(tiny_sd15_dir, out / DIFFUSERS_WEIGHT_NAME))
    assert np.abs(kohya - _with_lora(tiny_sd15_dir)).max() > 1e-3


@pytest.fixture(scope="module")
def flux_kohya_run(icons, tiny_flux_dir, tmp_path_factory):
    """FLUX.1-dev tiny, a few double-block modules (no to_v) + CLIP, kohya export too, 6 steps: the output dir."""
    out = tmp_path_factory.mktemp("flux-kohya") / "run"
    _train(
        icons, out, tiny_flux_dir, measure_loss=False, snr_gamma=None, max_sequence_length=MAX_SEQ,
        max_train_steps=6, learning_rate=2e-2, lora_layers=FLUX_DOUBLE_LAYERS, export_format="kohya",
        train_text_encoder=True, text_encoder_lr=2e-2, num_validation_images=0,
    )  # fmt: skip
    return out


def test_flux_kohya_export_fuses_qkv_block_diagonally(flux_kohya_run):
    sd = load_file(str(flux_kohya_run / KOHYA_WEIGHT_NAME))
    peft = load_file(str(flux_kohya_run / DIFFUSERS_WEIGHT_NAME))
    modules = {k.split(".")[0] for k in sd}
    te = {m for m in modules if m.startswith("lora_te1_text_model_encoder_layers_")}  # CLIP, as kohya names it
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" in te
    assert modules - te == {
        "lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_txt_attn_qkv",
        "lora_unet_double_blocks_0_img_attn_proj", "lora_unet_double_blocks_0_img_mlp_2",
    }  # fmt: skip
    width = 32  # tiny Flux's inner width (FLUX.1: 3072)
    down = sd["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"]
    up = sd["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"]
    assert down.shape == (3 * RANK, width) and up.shape == (3 * width, 3 * RANK)
    assert float(sd["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 3 * RANK  # alpha / (3 r) = lora_alpha / r
    for part, name in enumerate(("to_q", "to_k")):
        a = peft[f"transformer.transformer_blocks.0.attn.{name}.lora_A.weight"]
        b = peft[f"transformer.transformer_blocks.0.attn.{name}.lora_B.weight"]
        rows, cols = slice(part * width, (part + 1) * width), slice(part * RANK, (part + 1) * RANK)
        torch.testing.assert_close(down[cols], a, rtol=0, atol=0)
        torch.testing.assert_close(up[rows, cols], b, rtol=0, atol=0)
        assert b.abs().max() > 0  # trained
    blocks = torch.zeros(3, 3, dtype=torch.bool)  # which (out part, rank part) blocks of lora_up are non-zero
    for i in range(3):
        for j in range(3):
            blocks[i, j] = bool(up[i * width : (i + 1) * width, j * RANK : (j + 1) * RANK].any())
    assert blocks.tolist() == [[True, False, False], [False, True, False], [False, False, False]]  # to_v: none
    assert not down[2 * RANK :].any()
    txt_down = sd["lora_unet_double_blocks_0_txt_attn_qkv.lora_down.weight"]
    assert not txt_down[: 2 * RANK].any() and txt_down[2 * RANK :].any()  # add_v_proj only
    assert float(sd["lora_unet_double_blocks_0_img_mlp_2.alpha"]) == RANK  # unfused: as peft's


def test_flux_kohya_export_reloads_like_the_diffusers_file(flux_kohya_run, tiny_flux_dir):
    kohya = _with_lora(tiny_flux_dir, flux_kohya_run / KOHYA_WEIGHT_NAME, **FLUX_CALL)
    np.testing.assert_array_equal(kohya, _with_lora(tiny_flux_dir, flux_kohya_run / DIFFUSERS_WEIGHT_NAME, **FLUX_CALL))
    assert np.abs(kohya - _with_lora(tiny_flux_dir, **FLUX_CALL)).max() > 1e-3


# ----------------------------------------------------------------------------------------------- 5. fused export
@pytest.mark.parametrize("lora_alpha", [2.0, 3.0])  # scale 1 and 1.5
def test_fused_flux_export_is_lossless_at_flux1_widths(lora_alpha):
    """fuse_flux_lora -> diffusers' `_convert_kohya_flux_lora_to_diffusers` gives back every module's B @ A at the
    scale peft applied (lora_alpha / r), at FLUX.1's real widths - the converter hard-codes the single blocks'
    3072 x 3 + 12288 split of linear1, so tiny Flux cannot test them. That converter is private: if diffusers
    changes it (names, the block-diagonal detection, where alpha / rank goes), this test is the loud failure."""
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    from vlgen.t2i.families.flux import fuse_flux_lora

    r, d = 2, 3072
    shapes = {  # module: (in, out)
        **{f"transformer_blocks.0.attn.{n}": (d, d) for n in ("to_q", "to_k", "to_v", "to_out.0")},
        **{f"transformer_blocks.0.attn.{n}": (d, d) for n in ("add_q_proj", "add_k_proj", "add_v_proj")},
        **{f"single_transformer_blocks.0.attn.{n}": (d, d) for n in ("to_q", "to_k", "to_v")},
        "single_transformer_blocks.0.proj_mlp": (d, 4 * d),
        "single_transformer_blocks.0.proj_out": (5 * d, d),  # concat(attention, mlp) -> d
    }
    g = torch.Generator().manual_seed(0)
    sd = {}
    for module, (n_in, n_out) in shapes.items():
        sd[f"{module}.lora_A.weight"] = torch.randn(r, n_in, generator=g)  # (r, in)
        sd[f"{module}.lora_B.weight"] = torch.randn(n_out, r, generator=g)  # (out, r)
    fused = fuse_flux_lora(sd, lora_alpha=lora_alpha)
    assert {k.split(".")[0] for k in fused} == {
        "lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_txt_attn_qkv",
        "lora_unet_double_blocks_0_img_attn_proj", "lora_unet_single_blocks_0_linear1",
        "lora_unet_single_blocks_0_linear2",
    }  # fmt: skip
    assert fused["lora_unet_single_blocks_0_linear1.lora_up.weight"].shape == (3 * d + 4 * d, 4 * r)
    back = _convert_kohya_flux_lora_to_diffusers(dict(fused))
    # no `.alpha` left: the converter folds alpha / rank into A and B, and the loader then uses scale 1
    assert set(back) == {f"transformer.{k}" for k in sd}
    # B' A' == (lora_alpha / r) B A, compared on a random probe X (in, 8) rather than as (out, in) matrices
    # (12288 x 3072 floats; 4 s on CPU): both sides have rank <= r, so any difference shows in B' A' X. In
    # float64, so that what is left is the float32 rounding of the folded scale (1.5: one ulp of A).
    probe = torch.randn(5 * d, 8, generator=g, dtype=torch.float64)
    for module, (n_in, _) in shapes.items():
        a, b = sd[f"{module}.lora_A.weight"], sd[f"{module}.lora_B.weight"]
        a2, b2 = back[f"transformer.{module}.lora_A.weight"], back[f"transformer.{module}.lora_B.weight"]
        assert a2.shape == a.shape and b2.shape == b.shape, module  # split back to rank r, not 3r / 4r
        x = probe[:n_in]
        want = b.double() @ (a.double() @ x) * (lora_alpha / r)  # (out, 8)
        got = b2.double() @ (a2.double() @ x)
        err = ((got - want).abs().max() / want.abs().max()).item()
        assert err < 1e-6, (module, err)


# ----------------------------------------------------------------------------------------------- 6. refused options
@pytest.mark.parametrize(
    ("family", "options", "message"),
    [
        ("flux", dict(snr_gamma=5.0), "--snr-gamma 5.0 is for DDPM bases .* flux trains with flow matching"),
        ("flux", dict(snr_gamma=None, noise_offset=0.05), "--noise-offset 0.05 is for DDPM bases"),
        ("sd15", dict(weighting_scheme="logit_normal"), "--weighting-scheme logit_normal is for flow-matching"),
        ("flux", dict(snr_gamma=None, resolution=72), "--resolution must be a multiple of 16 for flux, got 72"),
        ("flux", dict(snr_gamma=None, max_sequence_length=513), "--max-sequence-length must be between 1 and 512"),
    ],
)
def test_options_a_family_does_not_take_fail_before_loading(
    icons, tiny_sd15_dir, tiny_flux_dir, tmp_path, family, options, message
):
    from vlgen.t2i.lora_trainer import LoraTrainer

    base = {"sd15": tiny_sd15_dir, "flux": tiny_flux_dir}[family]
    with pytest.raises(ConfigError, match=message) as e:
        LoraTrainer(lora_config(icons, tmp_path / "o", base, None, **options))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------- 7. flow matching
@pytest.fixture(scope="module")
def flow_scheduler(tiny_flux_dir):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_pretrained(tiny_flux_dir, subfolder="scheduler")


def _flow(sched, scheme: str, seed: int = 3, n: int = 64):
    from vlgen.t2i.lora_config import LoraTrainConfig
    from vlgen.t2i.objectives import flow_matching_noisy

    latents = torch.randn(n, 16, 8, 8, generator=torch.Generator().manual_seed(100))
    pred = flow_matching_noisy(
        latents, torch.Generator().manual_seed(seed), LoraTrainConfig(weighting_scheme=scheme), sched
    )
    return latents, pred


@pytest.mark.parametrize("scheme", ["none", "logit_normal", "sigma_sqrt"])
def test_flow_matching_interpolates_latents_and_noise(flow_scheduler, scheme):
    x, pred = _flow(flow_scheduler, scheme)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))  # the objective's first draw
    s = pred.extra["sigmas"]  # (n,)
    assert s.shape == (64,) and bool(((s > 0) & (s <= 1)).all()) and len(s.unique()) > 10
    torch.testing.assert_close(pred.noisy, (1 - s.view(-1, 1, 1, 1)) * x + s.view(-1, 1, 1, 1) * noise)
    torch.testing.assert_close(pred.target, noise - x)
    torch.testing.assert_close(pred.timesteps, s * 1000)  # dev's schedule before dynamic shifting
    if scheme == "none":
        assert pred.weights is None
    elif scheme == "logit_normal":  # the density changes, the loss stays unweighted
        torch.testing.assert_close(pred.weights, torch.ones(64))
    else:
        torch.testing.assert_close(pred.weights, s**-2)
    _, again = _flow(flow_scheduler, scheme)
    torch.testing.assert_close(again.noisy, pred.noisy, rtol=0, atol=0)
    torch.testing.assert_close(again.extra["sigmas"], s, rtol=0, atol=0)
    _, other = _flow(flow_scheduler, scheme, seed=4)
    assert not torch.equal(other.extra["sigmas"], s)


def test_logit_normal_concentrates_the_timesteps_in_the_middle(flow_scheduler):
    _, uniform = _flow(flow_scheduler, "none", n=512)
    _, logit = _flow(flow_scheduler, "logit_normal", n=512)
    middle = lambda s: ((s > 0.25) & (s < 0.75)).float().mean().item()  # noqa: E731
    assert middle(logit.extra["sigmas"]) > middle(uniform.extra["sigmas"]) + 0.1


# ----------------------------------------------------------------------------------------------- 8. generation
def test_generate_writes_the_family_defaults_it_used(tiny_sd15_dir, tmp_path):
    import vlgen

    settings = vlgen.GenerateSettings(base=str(tiny_sd15_dir), num_inference_steps=2, width=64, height=64)
    vlgen.generate(["a red circle"], tmp_path / "gen", settings)
    (row,) = [json.loads(line) for line in (tmp_path / "gen" / "metadata.jsonl").read_text().splitlines()]
    assert (row["num_inference_steps"], row["guidance_scale"], row["family"]) == (2, 7.5, "sd15")
    assert (row["width"], row["height"]) == (64, 64)


def test_text_to_image_on_flux_with_the_pipelines_default_sequence_length(tiny_flux_dir):
    """text_to_image leaves max_sequence_length at FluxPipeline's 512: tiny T5 takes it (relative positions)."""
    from vlgen.t2i.generate import text_to_image

    (image,) = text_to_image("a red circle", base=str(tiny_flux_dir), num_inference_steps=2, width=64, height=64)
    assert image.size == (64, 64)


def test_flux_family_defaults_tell_dev_from_schnell(tiny_flux_dir, tiny_flux_schnell_dir):
    from vlgen.t2i.generate import family_defaults, load_pipeline

    dev, schnell = (load_pipeline(str(p), device="cpu") for p in (tiny_flux_dir, tiny_flux_schnell_dir))
    assert family_defaults(dev, None, None) == (28, 3.5)
    assert family_defaults(schnell, None, None) == (4, 0.0)  # no classifier-free guidance
    assert family_defaults(schnell, 2, 1.0) == (2, 1.0)


def test_flux_aspect_ratio_buckets_are_multiples_of_16(tiny_flux_dir, tmp_path):
    """Buckets of a Flux run are multiples of 16: at --resolution 64 the SD buckets hold (72, 56), whose 9 x 7
    latents cannot be packed into 2x2 patches (it crashed in FluxPipeline._pack_latents)."""
    from PIL import Image

    data = tmp_path / "tall"
    data.mkdir()
    for i in range(2):
        Image.new("RGB", (56, 72), (200, 60 * i, 40)).save(data / f"{i:06d}.png")
    trainer, *_ = _train(
        data, tmp_path / "o", tiny_flux_dir, measure_loss=False, snr_gamma=None, max_sequence_length=MAX_SEQ,
        max_train_steps=1, aspect_ratio_buckets=True, num_validation_images=0,
    )  # fmt: skip
    assert all(side % 16 == 0 for bucket in trainer.data.buckets for side in bucket)
