"""The model resolver: local directories, the hub cache, and failing fast (one line) when offline."""

import time

import pytest
import typer

import vlgen.cli
import vlgen.hub
from vlgen.errors import ModelNotAvailableError
from vlgen.hub import DEFAULT_MODELS, looks_like_hub_id, resolve_model

BLIP_ID = DEFAULT_MODELS["blip"]  # Salesforce/blip-image-captioning-base


@pytest.fixture
def empty_offline_hub(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty hub cache (constants are read at import, so patch them too)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_offline_and_not_cached_fails_fast_naming_the_model(empty_offline_hub):
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model(BLIP_ID, what="captioning model")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert BLIP_ID in message and "HF_HUB_OFFLINE" in message and str(empty_offline_hub) in message
    assert "\n" not in message


def test_offline_but_cached_resolves_to_the_snapshot(empty_offline_hub):
    # The hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}
    repo = empty_offline_hub / ("models--" + BLIP_ID.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    resolved = resolve_model(BLIP_ID)
    assert (resolved.source, resolved.path.resolve()) == ("cache", snapshot.resolve())


def test_local_directory_wins(tiny_dino_dir):
    resolved = resolve_model(str(tiny_dino_dir))
    assert (resolved.source, resolved.path) == ("local", tiny_dino_dir.resolve())


def test_a_file_or_an_invalid_reference_is_rejected(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(ModelNotAvailableError, match="is a file"):
        resolve_model(file)
    with pytest.raises(ModelNotAvailableError, match="not a valid hub id"):
        resolve_model("../no/such/dir")
    assert looks_like_hub_id(BLIP_ID) and not looks_like_hub_id("a/b/c")


def test_cli_reports_a_missing_model_in_one_line_without_traceback(empty_offline_hub, monkeypatch, capsys):
    # No command that takes a model is registered yet in this test's scope, so drive `main` with a stand-in
    # that resolves a model exactly as the real commands do.
    app = typer.Typer()

    @app.command()
    def caption(model: str = typer.Option(BLIP_ID)) -> None:
        vlgen.hub.resolve_model(model, what="captioning model")

    @app.command()
    def other() -> None:  # a second command keeps Typer from collapsing the app into one command
        pass

    monkeypatch.setattr(vlgen.cli, "app", app)
    start = time.perf_counter()
    assert vlgen.cli.main(["caption"]) == 1
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "Traceback" not in err and BLIP_ID in err and err.startswith("error:")


def test_caption_cli_with_an_uncached_hub_id_offline(empty_offline_hub, tmp_path, capsys):
    import accelerate  # noqa: F401 - imported up front so the timing below is the resolver's, not imports'
    from PIL import Image

    import vlgen.captioning.registry

    image = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(image)
    start = time.perf_counter()
    assert vlgen.cli.main(["caption", str(image), "--model", BLIP_ID, "--device", "cpu"]) == 1
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "Traceback" not in err and BLIP_ID in err
