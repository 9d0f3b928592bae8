"""`vlgen tiny NAME OUT` driven in-process."""

import json

import pytest

from vlgen.cli import main
from vlgen.testing import MARKER, TINY_BUILDERS


def test_tiny_blip_writes_a_loadable_directory(tmp_path, capsys):
    out = tmp_path / "blip"
    assert main(["tiny", "blip", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json", MARKER} <= names
    assert capsys.readouterr().out.strip() == str(out.resolve())


@pytest.mark.parametrize(
    ("name", "pipeline_class", "component"),
    [("sd15", "StableDiffusionPipeline", "unet"), ("flux", "FluxPipeline", "transformer")],
)
def test_tiny_t2i_pipelines_load_with_from_pretrained(name, pipeline_class, component, tmp_path, capsys):
    import diffusers

    out = tmp_path / name
    assert main(["tiny", name, str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == pipeline_class
    pipe = getattr(diffusers, pipeline_class).from_pretrained(out)
    assert getattr(pipe, component) is not None and pipe.vae_scale_factor == 8


def test_seed_option(tmp_path):
    assert main(["tiny", "dino", str(tmp_path / "d"), "--seed", "3"]) == 0
    assert json.loads((tmp_path / "d" / MARKER).read_text())["seed"] == 3


def test_unknown_name_exits_1_naming_the_valid_names(tmp_path, capsys):
    assert main(["tiny", "nope", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
    assert all(name in err for name in TINY_BUILDERS)
    assert not (tmp_path / "x").exists()
