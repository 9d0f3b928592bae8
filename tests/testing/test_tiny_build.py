"""The registry and the build contract: atomic directories, determinism, no side effects."""

import json

import pytest
import torch
from safetensors.torch import load_file

from vlgen.errors import VlgenError
from vlgen.testing import MARKER, TINY_BUILDERS, build_tiny, file_digests
from vlgen.testing._common import write_model_dir

HF_NAMES = ("blip", "vit-gpt2", "sdxl", "sdxl-vae", "sd15", "flux", "flux-schnell", "clip", "dino")
WEIGHT_SUFFIX = ".safetensors"


def _fixture_dir(request, name):
    return request.getfixturevalue(f"tiny_{name.replace('-', '_')}_dir")


def test_registry_names():
    # wd-tagger: test_wd_tagger.py; florence-2, qwen2-vl: tests/captioning/test_vlm.py
    assert set(TINY_BUILDERS) == {*HF_NAMES, "cnn-lstm", "vgg19", "wd-tagger", "florence-2", "qwen2-vl"}


def test_vgg19_is_torchvisions_vgg19_features_seeded(tmp_path):
    """`vlgen tiny vgg19`: weights torchvision's vgg19().features loads strictly; the same seed, the same file."""
    from torchvision.models import vgg19

    from vlgen.metrics.image.gram import load_vgg

    a = build_tiny("vgg19", tmp_path / "a", seed=0)
    state = load_file(a / "model.safetensors")
    with torch.device("meta"):  # the real class, without initialising its 120M-parameter classifier
        features = vgg19(weights=None).features
    features.load_state_dict(state, assign=True)  # strict: every key and shape of the real network
    assert sum(v.numel() for v in state.values()) == 20_024_384
    assert file_digests(build_tiny("vgg19", tmp_path / "b", seed=0)) == file_digests(a)
    other = load_file(build_tiny("vgg19", tmp_path / "c", seed=1) / "model.safetensors")
    assert not torch.equal(other["0.weight"], state["0.weight"])
    assert load_vgg(a, image_size=32).indices == (1, 6, 11, 20, 29)  # what --vgg-weights DIR reads


def test_unknown_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(VlgenError) as info:
        build_tiny("blip-large", tmp_path / "x")
    assert "blip-large" in str(info.value)
    assert all(name in str(info.value) for name in TINY_BUILDERS)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", HF_NAMES)
def test_same_seed_gives_identical_files_other_seed_other_weights(name, request, tmp_path):
    first = file_digests(_fixture_dir(request, name))
    assert any(p.endswith(WEIGHT_SUFFIX) for p in first)
    assert file_digests(build_tiny(name, tmp_path / "again", seed=0)) == first  # weights, tokenizers, configs

    other = file_digests(build_tiny(name, tmp_path / "seed1", seed=1))
    assert other.keys() == first.keys()
    for path, digest in first.items():
        if path.endswith(WEIGHT_SUFFIX):
            assert other[path] != digest, f"{path}: seed 1 gave the same weights as seed 0"
        elif path != MARKER:  # tokenizers, configs and processors do not depend on the seed
            assert other[path] == digest, f"{path} depends on the seed"


def test_marker_and_permissions(tiny_dino_dir):
    assert json.loads((tiny_dino_dir / MARKER).read_text()) == {"name": "dino", "seed": 0, "random_weights": True}
    for path in [tiny_dino_dir, *tiny_dino_dir.iterdir()]:
        assert path.stat().st_mode & 0o044, f"{path} is not readable by others (mkstemp's 0600 leaked)"


def test_rebuild_replaces_a_tiny_dir_and_leaves_no_temp_dirs(tmp_path):
    out = tmp_path / "dino"
    build_tiny("dino", out, seed=0)
    w0 = load_file(out / "model.safetensors")
    build_tiny("dino", out, seed=1)
    w1 = load_file(out / "model.safetensors")
    assert not torch.equal(w0["embeddings.cls_token"], w1["embeddings.cls_token"])
    assert json.loads((out / MARKER).read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["dino"]


def test_never_overwrites_a_foreign_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(VlgenError, match="not empty"):
        build_tiny("dino", out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def build(tmp):
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_model_dir(tmp_path / "out", "x", 0, build)
    assert list(tmp_path.iterdir()) == []


def test_building_does_not_touch_the_global_rng(tmp_path):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    build_tiny("dino", tmp_path / "d", seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_cnn_lstm_builder_round_trips(tiny_cnn_lstm_dir, tmp_path):
    cnn_lstm = pytest.importorskip("vlgen.captioning.cnn_lstm")
    from vlgen.hub import resolve_model

    model = cnn_lstm.CnnLstmModel.from_pretrained(resolve_model(tiny_cnn_lstm_dir).path)
    assert len(model.vocab) > 4
    again = build_tiny("cnn-lstm", tmp_path / "again", seed=0)
    a, b = file_digests(again), file_digests(tiny_cnn_lstm_dir)
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if not k.endswith(WEIGHT_SUFFIX)} == {
        k: v for k, v in b.items() if not k.endswith(WEIGHT_SUFFIX)
    }
    # Tensors, not bytes: safetensors writes a multi-key `metadata` dict in a random order (Rust HashMap),
    # and this checkpoint has two keys (format, model_type).
    w0, w1 = load_file(tiny_cnn_lstm_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
