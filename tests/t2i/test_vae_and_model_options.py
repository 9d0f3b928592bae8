"""`--vae` defaults to the base model's own VAE (train lora, generate, serve); the shipped SDXL recipe names the
fp16-fix VAE; a model missing offline is reported with the option that picks another one."""

from __future__ import annotations

import pytest

from vlgen.cli import main
from vlgen.hub import DEFAULT_MODELS

MISSING = "nobody/not-in-this-cache"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


def test_train_lora_uses_the_bases_own_vae_by_default(offline, icons, tiny_sdxl_dir, tmp_path, capsys):
    from vlgen.t2i.lora_config import LoraTrainConfig

    assert LoraTrainConfig().pretrained_vae_model_name_or_path is None
    out = tmp_path / "run"
    argv = ["train", "lora", "--base", str(tiny_sdxl_dir), "--data", str(icons), "--out", str(out)]
    argv += ["--instance-prompt", "a 3D icon in the style of TOK", "--resolution", "64", "--max-train-steps", "1"]
    argv += ["--train-batch-size", "2", "--num-validation-images", "0", "--num-inference-steps", "1"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "sdxl-vae-fp16-fix" not in err and (out / "pytorch_lora_weights.safetensors").is_file()


def test_none_still_means_the_bases_own_vae(tiny_sdxl_dir):
    from vlgen.t2i.conditioning import load_components

    base_vae = load_components(str(tiny_sdxl_dir), None).vae
    for ref in ("none", ""):
        vae = load_components(str(tiny_sdxl_dir), ref).vae
        assert vae.config == base_vae.config


def test_shipped_sdxl_recipes_name_the_fp16_fix_vae():
    from vlgen.config import load_yaml, locate_config, shipped_configs
    from vlgen.t2i.families import family_hint

    bases = {name: load_yaml(locate_config(name)).get("pretrained_model_name_or_path") for name in shipped_configs()}
    sdxl = [name for name, base in bases.items() if base and getattr(family_hint(base), "name", None) == "sdxl"]
    assert sdxl  # the 3D-icons recipe at least
    for name in sdxl:
        assert load_yaml(locate_config(name)).get("pretrained_vae_model_name_or_path") == DEFAULT_MODELS["sdxl-vae"]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["generate", "a cat", "--base", "{base}", "--vae", MISSING, "--out", "{tmp}/g"], "--vae"),
        (["generate", "a cat", "--base", MISSING, "--out", "{tmp}/g"], "--base"),
        (["train", "lora", "--base", "{base}", "--vae", MISSING, "--data", "{icons}", "--out", "{tmp}/l"], "--vae"),
        (["train", "lora", "--base", MISSING, "--data", "{icons}", "--out", "{tmp}/l"], "--base"),
        (["caption", "{icons}", "--model", MISSING], "--model"),
        (["serve", "--caption-model", MISSING], "--caption-model"),
    ],
    ids=["generate-vae", "generate-base", "lora-vae", "lora-base", "caption", "serve"],
)
def test_offline_not_in_cache_names_the_option(argv, option, offline, icons, tiny_sdxl_dir, tmp_path, capsys):
    fill = {"base": str(tiny_sdxl_dir), "icons": str(icons), "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    if argv[:2] == ["train", "lora"]:
        argv += ["--instance-prompt", "TOK", "--resolution", "64"]
    assert main(argv) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"'{MISSING}' is not in the local cache" in err and f"pass {option} a local directory" in err, err
    if option == "--vae":
        assert "--vae none" in err
    assert "Traceback" not in err


def test_serve_vae_reaches_the_pipeline_and_needs_a_base(tiny_sdxl_dir, tiny_sdxl_vae_dir):
    from vlgen.errors import ConfigError
    from vlgen.serving.generation import TextToImage
    from vlgen.serving.settings import ServeSettings

    with pytest.raises(ConfigError, match="--vae .* needs --t2i-base"):
        ServeSettings(vae=str(tiny_sdxl_vae_dir)).check()
    own = TextToImage.load(str(tiny_sdxl_dir)).pipe.vae.config
    separate = TextToImage.load(str(tiny_sdxl_dir), vae=str(tiny_sdxl_vae_dir)).pipe.vae.config
    assert own.force_upcast and not separate.force_upcast  # the tiny base's VAE vs the fp16-fix stand-in


def test_model_options_are_per_command_and_by_kind():
    from vlgen.hub import name_model_options, option_for

    def run():
        name_model_options(captioner="--model", vae="--vae")
        return option_for("BLIP captioner"), option_for("VAE"), option_for("CLIP model")

    import contextvars

    assert contextvars.copy_context().run(run) == ("--model", "--vae", None)
    assert option_for("BLIP captioner") is None  # nothing leaks out of the command's context
    with pytest.raises(ValueError, match="unknown model kind"):
        name_model_options(captoner="--model")
