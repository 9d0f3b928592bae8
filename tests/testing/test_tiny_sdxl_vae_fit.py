"""`vlgen tiny sdxl OUT --fit-vae DIR`: the tiny SDXL's VAE fitted as an autoencoder on a folder of images."""

import json

import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from vlgen.cli import main
from vlgen.testing import build_tiny, file_digests
from vlgen.testing._common import seeded
from vlgen.testing.sdxl import VAE_FIT_FILE, _load_pixels, fit_tiny_sdxl_vae, tiny_sdxl_vae, vae_image_paths

STEPS = 15  # about a second on one CPU thread; enough to beat the random VAE clearly
BATCH = 4


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """12 synthetic scenes; the VAE is fitted on their train split (a dataset folder with metadata.jsonl)."""
    data = tmp_path_factory.mktemp("vae-data") / "synth"
    assert main(["data", "synth", str(data), "--n", "12", "--seed", "0"]) == 0
    return data


def _vae():
    with seeded(0):
        return tiny_sdxl_vae().eval()


@pytest.fixture(scope="module")
def fitted(images):
    vae = _vae()
    return vae, fit_tiny_sdxl_vae(vae, images, steps=STEPS, seed=0, batch_size=BATCH)


def test_fitting_lowers_the_reconstruction_error(fitted, images):
    _, summary = fitted
    assert summary["steps"] == STEPS and summary["images"] == len(vae_image_paths(images))
    assert summary["reconstruction_mse_after"] < 0.5 * summary["reconstruction_mse_before"]


def test_scaling_factor_is_one_over_the_latent_std(fitted, images):
    vae, summary = fitted
    assert vae.config.scaling_factor == pytest.approx(1 / summary["latent_std"])
    assert vae.config.scaling_factor != pytest.approx(0.13025)
    pixels = _load_pixels(vae_image_paths(images), 64).float() / 127.5 - 1
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample(generator=torch.Generator().manual_seed(5))
    assert (latents * vae.config.scaling_factor).std().item() == pytest.approx(1.0, rel=0.1)  # unit variance


def test_same_seed_same_weights_other_seed_other_weights(fitted, images):
    again, other = _vae(), _vae()
    fit_tiny_sdxl_vae(again, images, steps=STEPS, seed=0, batch_size=BATCH)
    fit_tiny_sdxl_vae(other, images, steps=STEPS, seed=1, batch_size=BATCH)
    ref = fitted[0].state_dict()
    assert all(torch.equal(ref[k], v) for k, v in again.state_dict().items())
    assert not all(torch.equal(ref[k], v) for k, v in other.state_dict().items())


def test_built_pipeline_loads_and_keeps_the_config_schema(images, tmp_path, tiny_sdxl_dir):
    out = build_tiny("sdxl", tmp_path / "a", seed=0, fit_vae=images, vae_steps=3)
    assert file_digests(out) == file_digests(build_tiny("sdxl", tmp_path / "b", seed=0, fit_vae=images, vae_steps=3))
    summary = json.loads((out / VAE_FIT_FILE).read_text())
    pipe = StableDiffusionXLPipeline.from_pretrained(out)
    assert pipe.vae.config.scaling_factor == pytest.approx(summary["scaling_factor"])
    random_vae = json.loads((tiny_sdxl_dir / "vae" / "config.json").read_text())
    assert set(json.loads((out / "vae" / "config.json").read_text())) == set(random_vae)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
    assert image.images.shape == (1, 64, 64, 3)
    assert not (tiny_sdxl_dir / VAE_FIT_FILE).exists()  # without the option: the random build, unchanged


@pytest.mark.parametrize("make", ["empty", "no-images", "missing"])
def test_bad_folder_is_one_clear_error(tmp_path, capsys, make):
    data = tmp_path / "data"
    if make != "missing":
        data.mkdir()
    if make == "no-images":
        (data / "notes.txt").write_text("not an image")
    assert main(["tiny", "sdxl", str(tmp_path / "out"), "--fit-vae", str(data)]) == 1
    err = capsys.readouterr().err
    assert str(data) in err.replace("\n", "") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_broken_image_names_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["tiny", "sdxl", str(tmp_path / "out"), "--fit-vae", str(data), "--vae-steps", "1"]) == 1
    err = capsys.readouterr().err.replace("\n", "")
    assert "broken.png" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_options_only_where_they_apply(tmp_path, capsys, images):
    assert main(["tiny", "clip", str(tmp_path / "c"), "--fit-vae", str(images)]) == 1
    assert "fit_vae" in capsys.readouterr().err
    assert main(["tiny", "sdxl", str(tmp_path / "s"), "--vae-steps", "3"]) == 1
    assert "--fit-vae" in capsys.readouterr().err


def test_colour_jitter_is_seeded_in_range_and_changes_colours():
    from vlgen.testing.sdxl import colour_jitter

    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = colour_jitter(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, colour_jitter(x, torch.Generator().manual_seed(1)))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    changed = (a - x).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert 0 < int(changed.sum()) < 16  # most images recoloured (p = 0.75), some left as they are
    assert torch.equal(colour_jitter(x, torch.Generator().manual_seed(1), p=0.0), x)
    assert torch.equal(x.mean(dim=(2, 3)).sort(dim=1).values, x.mean(dim=(2, 3)).sort(dim=1).values)


def test_fit_records_the_colour_augmentation(fitted):
    assert fitted[1]["colour_augment"] is True
