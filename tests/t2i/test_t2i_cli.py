"""The t2i commands in-process: `vlgen generate` outputs, `vlgen autocaption`, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from vlgen.cli import main


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_generate_writes_images_and_metadata(trained, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, capsys):
    _, lora, *_ = trained
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a 3D icon of a cat\n\n")
    out = tmp_path / "gen"
    args = ["generate", "a 3D icon in the style of TOK", "--prompts-file", str(prompts), "--base", str(tiny_sdxl_dir)]
    args += ["--vae", str(tiny_sdxl_vae_dir), "--lora", str(lora), "--lora-scale", "0.8", "--seed", "5"]
    args += ["--num-inference-steps", "2", "--width", "64", "--height", "48", "--out", str(out)]
    assert main(args) == 0
    rows = _rows(out / "metadata.jsonl")
    assert [r["prompt"] for r in rows] == ["a 3D icon in the style of TOK", "a 3D icon of a cat"]
    assert [r["seed"] for r in rows] == [5, 6]
    assert rows[0]["lora"] == str(lora) and rows[0]["lora_scale"] == 0.8 and rows[0]["model"] == "lora"
    assert rows[0]["base"] == str(tiny_sdxl_dir) and rows[0]["num_inference_steps"] == 2
    assert Image.open(out / rows[0]["file_name"]).size == (64, 48)
    assert "generated 2 images" in capsys.readouterr().out


def test_generate_one_image_says_image_not_images(tiny_sdxl_dir, tmp_path, capsys):
    out = tmp_path / "one"
    args = ["generate", "a red circle", "--base", str(tiny_sdxl_dir), "--num-inference-steps", "1"]
    assert main([*args, "--width", "64", "--height", "64", "--out", str(out)]) == 0
    assert f"generated 1 image in {out}" in capsys.readouterr().out


def test_generate_compare_makes_both_sets_and_a_grid(trained, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path):
    _, lora, *_ = trained
    out = tmp_path / "cmp"
    args = ["generate", "a 3D icon in the style of TOK", "--base", str(tiny_sdxl_dir), "--vae", str(tiny_sdxl_vae_dir)]
    args += ["--lora", str(lora / "pytorch_lora_weights_kohya.safetensors"), "--compare"]
    args += ["--num-inference-steps", "2", "--num-images-per-prompt", "2", "--out", str(out)]
    assert main(args) == 0
    base, tuned = _rows(out / "base" / "metadata.jsonl"), _rows(out / "lora" / "metadata.jsonl")
    assert [r["seed"] for r in base] == [r["seed"] for r in tuned] == [0, 1]
    assert {r["model"] for r in base} == {"base"} and {r["model"] for r in tuned} == {"lora"}
    grid = Image.open(out / "compare.png")
    assert grid.size[1] >= 2 * 64 and grid.size[0] >= 2 * 64
    a = Image.open(out / "base" / base[0]["file_name"]).tobytes()
    assert a != Image.open(out / "lora" / tuned[0]["file_name"]).tobytes()


def test_autocaption_template_resume_overwrite_and_bad_images(icons, tiny_blip_dir, tmp_path, capsys):
    folder = tmp_path / "icons"
    folder.mkdir()
    for p in sorted(icons.glob("*.png"))[:3]:
        shutil.copy(p, folder / p.name)
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "000000.png", "prompt": "kept", "x": 1}) + "\n")
    (folder / "broken.png").write_bytes(b"not a png")
    args = ["autocaption", str(folder), "--model", str(tiny_blip_dir), "--caption-column", "prompt"]
    args += ["--template", "a 3D icon in the style of TOK, {caption}", "--num-beams", "1", "--max-new-tokens", "5"]

    assert main(args) == 1  # the bad image fails the command, after the good ones are written
    err = " ".join(capsys.readouterr().err.split())
    assert "broken.png" in err and "--on-error skip" in err and "Traceback" not in err
    rows = {r["file_name"]: r for r in _rows(folder / "metadata.jsonl")}
    assert rows["000000.png"] == {"file_name": "000000.png", "prompt": "kept", "x": 1}  # kept as it was
    assert set(rows) == {"000000.png", "000001.png", "000002.png"}
    assert rows["000001.png"]["prompt"].startswith("a 3D icon in the style of TOK, ")
    first = rows["000001.png"]["prompt"]

    assert main([*args, "--on-error", "skip"]) == 0  # nothing left to caption but the broken file
    assert "captioned 0, kept 3, failed 1" in capsys.readouterr().out
    assert main([*args, "--on-error", "skip", "--overwrite"]) == 0
    rows = {r["file_name"]: r for r in _rows(folder / "metadata.jsonl")}
    assert rows["000000.png"]["prompt"] != "kept" and rows["000000.png"]["x"] == 1
    assert rows["000001.png"]["prompt"] == first  # deterministic captioner
    # An --overwrite run interrupted and rerun does not redo what it already did.
    assert main([*args, "--on-error", "skip", "--overwrite"]) == 0
    assert "captioned 0, kept 3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_dir", "no such directory"),
        ("no_images", "no images"),
        ("caption_column", "'prompt'"),
        ("resolution", "--resolution must be a positive multiple of 8 (the VAE downsamples by 8), got 100"),
        ("template", "must contain {caption}"),
        ("autocaption_missing", "no such directory"),
        ("generate_no_prompt", "no prompts"),
        ("generate_compare", "--compare needs --lora"),
    ],
)
def test_bad_input_is_one_line_exit_1(case, message, icons, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    train = ["train", "lora", "--instance-prompt", "TOK", "--out", str(tmp_path / "o"), "--base", "/nonexistent"]
    argv = {
        "missing_dir": [*train, "--data", str(tmp_path / "nope")],
        "no_images": [*train, "--data", str(empty)],
        "caption_column": [*train, "--data", str(icons), "--caption-column", "prompt"],
        "resolution": [*train, "--data", str(icons), "--resolution", "100"],
        "template": ["autocaption", str(icons), "--template", "a 3D icon in the style of TOK"],
        "autocaption_missing": ["autocaption", str(tmp_path / "nope")],
        "generate_no_prompt": ["generate", "--out", str(tmp_path / "g")],
        "generate_compare": ["generate", "a cat", "--compare", "--out", str(tmp_path / "g")],
    }[case]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3  # one message (rich may wrap it)


def test_shipped_recipe_is_the_write_ups_run():
    from vlgen.config import resolve_config
    from vlgen.t2i.lora_config import LoraTrainConfig

    cfg = resolve_config(LoraTrainConfig, "sdxl-lora-3d-icons", {"instance_data_dir": "data/3d_icons"})
    assert cfg.pretrained_model_name_or_path == "stabilityai/stable-diffusion-xl-base-1.0"
    assert cfg.pretrained_vae_model_name_or_path == "madebyollin/sdxl-vae-fp16-fix"
    assert (cfg.caption_column, cfg.instance_prompt, cfg.resolution) == (
        "prompt",
        "a 3D icon in the style of TOK",
        1024,
    )
    assert (cfg.train_batch_size, cfg.gradient_accumulation_steps, cfg.gradient_checkpointing) == (1, 4, True)
    assert (cfg.learning_rate, cfg.snr_gamma, cfg.lr_scheduler, cfg.lr_warmup_steps) == (1e-4, 5.0, "constant", 0)
    assert (cfg.use_8bit_adam, cfg.max_train_steps, cfg.checkpointing_steps, cfg.seed) == (True, 500, 500, 0)
    assert cfg.mixed_precision == "fp16"


@pytest.mark.parametrize(
    ("recipe", "family"),
    [("sdxl-lora-3d-icons", "sdxl"), ("sd15-lora-dreambooth", "sd15"), ("flux-lora-dreambooth", "flux")],
)
def test_shipped_lora_recipes_pass_their_familys_checks(recipe, family, tmp_path):
    """Every shipped LoRA recipe names a base of its family and only options that family takes (the family is known
    from the hub id without any download)."""
    from vlgen.config import resolve_config
    from vlgen.t2i.families import family_hint
    from vlgen.t2i.lora_config import LoraTrainConfig, check_lora_layers

    cfg = resolve_config(
        LoraTrainConfig, recipe, {"instance_data_dir": str(tmp_path), "output_dir": str(tmp_path / "o")}
    )
    fam = family_hint(cfg.pretrained_model_name_or_path)
    assert fam is not None and fam.name == family
    fam.check_config(cfg)
    check_lora_layers(cfg, fam.name)
    assert cfg.mixed_precision == ("bf16" if family == "flux" else "fp16")
