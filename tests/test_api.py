"""vlgen's Python API: `import vlgen` stays light, every exported name resolves lazily, and every example - the
README's "Python API" blocks and the `Example::` of each exported entry point's docstring - runs on tiny models.

Examples run as written, in a folder laid out as they assume (`data/ddb`, `data/3d_icons`, `photos/`, `cat.jpg`,
`dog.png`, `gen/`, `runs/blip/best`, `runs/cnn/best`, `runs/3dicon`), with the hub ids they name resolved from a
hub cache whose entries are the tiny models (HF_HUB_OFFLINE=1). Training examples run with their lengths shrunk
(`SHRINK_*`, applied where `vlgen.train_captioner` / `vlgen.train_lora` are called) - the only change made.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vlgen

README = Path(__file__).resolve().parents[1] / "README.md"
HEAVY = ("torch", "transformers", "diffusers", "accelerate", "peft", "torchvision", "sentence_transformers")
# Exported types: their docstrings describe them; the functions and config dataclasses carry the examples.
NO_EXAMPLE = {"Captioner", "CaptionScores", "ImageScores", "RoundtripResult", "VlgenError"}
# Training examples show real run lengths; these make them a few seconds on tiny models (nothing else changes).
SHRINK_CAPTIONER = dict(
    epochs=1, max_train_steps=2, train_batch_size=4, eval_batch_size=4, gradient_accumulation_steps=1,
    max_length=24, max_new_tokens=8, metric_for_best_model="loss", lr_warmup_steps=0,
)  # fmt: skip
SHRINK_LORA = dict(
    resolution=64, max_train_steps=2, train_batch_size=2, gradient_accumulation_steps=1, num_validation_images=1,
    num_inference_steps=2, checkpointing_steps=1000, mixed_precision="no", lr_warmup_steps=0,
)  # fmt: skip


# Examples that call these start Java (coco metrics: ~12 s the first time in a session) or run several jobs in
# one: slow tier. The rest take 1-7 s each on 2 CPU cores.
SLOW_CALLS = ("compute_caption_metrics(", "roundtrip_prompts(", "roundtrip_images(")


def _tier(code: str) -> list:
    return [pytest.mark.slow] if any(call in code for call in SLOW_CALLS) else []


# --- import vlgen: light, lazy, complete --------------------------------------------------------------------


def test_import_vlgen_imports_no_heavy_library():
    code = "import sys, vlgen; vlgen.__all__; dir(vlgen); print(sorted(m for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {m.split(".")[0] for m in ast.literal_eval(out.strip())}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not [m for m in ast.literal_eval(out.strip()) if m.startswith("vlgen.") and m != "vlgen"]


def test_every_exported_name_resolves_to_its_module_object():
    names = [n for n in vlgen.__all__ if n != "__version__"]
    assert len(names) == len(set(names))
    assert set(names) == set(vlgen._EXPORTS)
    for name in names:
        module = sys.modules.get(vlgen._EXPORTS[name]) or __import__(vlgen._EXPORTS[name], fromlist=["_"])
        assert getattr(vlgen, name) is getattr(module, name), name
    assert set(vlgen.__all__) <= set(dir(vlgen))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        vlgen.no_such_name  # noqa: B018
    assert not hasattr(vlgen, "load_captioners")


def test_type_checking_imports_match_the_exports():
    """What IDEs and type checkers read (the TYPE_CHECKING block) names exactly the lazy exports, from the same
    modules - so go-to-definition and completion match what `vlgen.NAME` returns at run time."""
    tree = ast.parse(Path(vlgen.__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    imported = {a.name: n.module for n in block.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert imported == vlgen._EXPORTS


# --- examples -------------------------------------------------------------------------------------------------


def readme_examples() -> list[str]:
    """The python code blocks of the README's "Python API" section."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Python API\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README.md has no '## Python API' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), flags=re.S | re.M)
    assert blocks, "the README's Python API section has no ```python block"
    return blocks


def docstring_example(obj) -> str | None:
    """The indented block after `Example::` in `obj`'s docstring, dedented; None when there is none."""
    return docstring_example_text(inspect.getdoc(obj))


def docstring_example_text(doc: str | None) -> str | None:
    doc = doc or ""
    m = re.search(r"^Example::\n\n((?:[ \t]+.*\n?|\n)+)", doc + "\n", flags=re.M)
    return textwrap.dedent(m.group(1)) if m else None


def _hub_cache(root: Path, models: dict[str, Path]) -> Path:
    """A hub cache (models--org--name/{refs/main, snapshots/<commit>}) whose snapshots are the tiny models."""
    commit = "0" * 40
    for hub_id, path in models.items():
        repo = root / ("models--" + hub_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        (repo / "snapshots").mkdir()
        (repo / "snapshots" / commit).symlink_to(path, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, request) -> dict[str, Path]:
    """The files the examples read, built once: datasets, loose images, a hub cache of tiny models."""
    from PIL import Image

    from vlgen.data.synth import synth_dataset
    from vlgen.hub import DEFAULT_MODELS

    root = tmp_path_factory.mktemp("api-inputs")
    ddb = root / "data" / "ddb"
    synth_dataset(ddb, n=12, seed=0, image_size=32, progress=False)
    icons = root / "data" / "3d_icons"
    synth_dataset(icons, n=4, seed=1, style="glossy", image_size=64, progress=False)
    pngs = sorted(ddb.rglob("*.png"))
    photos = root / "photos"
    photos.mkdir()
    for p in pngs[:3]:
        shutil.copy(p, photos / p.name)
    Image.open(pngs[0]).convert("RGB").save(root / "cat.jpg")
    Image.open(pngs[1]).convert("RGBA").save(root / "dog.png")  # alpha: composited on white like a file
    gen = root / "gen"
    gen.mkdir()
    for i, p in enumerate(sorted(icons.rglob("*.png"))[:2]):
        shutil.copy(p, gen / f"{i:04d}.png")
    fixture = request.getfixturevalue
    hub = _hub_cache(
        root / "hub",
        {
            DEFAULT_MODELS["blip"]: fixture("tiny_blip_dir"),
            DEFAULT_MODELS["sdxl"]: fixture("tiny_sdxl_dir"),
            DEFAULT_MODELS["sdxl-vae"]: fixture("tiny_sdxl_vae_dir"),
            DEFAULT_MODELS["clip"]: fixture("tiny_clip_dir"),
            DEFAULT_MODELS["dino"]: fixture("tiny_dino_dir"),
        },
    )
    return {
        "data": root / "data",
        "photos": photos,
        "cat.jpg": root / "cat.jpg",
        "dog.png": root / "dog.png",
        "gen": gen,
        "hub": hub,
        "runs/blip/best": fixture("tiny_blip_dir"),
        "runs/cnn/best": fixture("tiny_cnn_lstm_dir"),
    }


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory, tiny_sdxl_dir, tiny_sdxl_vae_dir, inputs) -> Path:
    """A `train_lora` output on tiny SDXL (one step): what `runs/3dicon` holds in the examples."""
    from vlgen.t2i.lora_config import LoraTrainConfig
    from vlgen.t2i.lora_trainer import train_lora

    out = tmp_path_factory.mktemp("api-lora") / "3dicon"
    cfg = LoraTrainConfig(
        pretrained_model_name_or_path=str(tiny_sdxl_dir),
        pretrained_vae_model_name_or_path=str(tiny_sdxl_vae_dir),
        instance_data_dir=str(inputs["data"] / "3d_icons"),
        output_dir=str(out),
        instance_prompt="a 3D icon in the style of TOK",
        **{**SHRINK_LORA, "max_train_steps": 1, "num_validation_images": 0},
    )
    train_lora(cfg)
    return out


def run_example(code: str, workdir: Path, inputs: dict[str, Path], request, monkeypatch) -> dict:
    """Run `code` as a user would, in `workdir` laid out as the examples assume; returns its namespace."""
    from huggingface_hub import constants

    import vlgen.captioning.trainer
    import vlgen.t2i.lora_trainer

    links = dict(inputs)
    del links["hub"]
    # A training example writes the run the other examples read; there it must not exist yet.
    if "train_captioner(" in code:
        del links["runs/blip/best"]
    if "runs/3dicon" in code and "train_lora(" not in code:
        links["runs/3dicon"] = request.getfixturevalue("tiny_lora")
    for rel, target in links.items():
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).symlink_to(target, target_is_directory=target.is_dir())
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLGEN_PROGRESS", "0")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(inputs["hub"]))

    calls: list[str] = []

    def shrunk(name: str, fn, shrink: dict):
        def run(cfg):
            calls.append(name)
            return fn(dataclasses.replace(cfg, **shrink))

        return run

    for module, name, shrink in (
        (vlgen.captioning.trainer, "train_captioner", SHRINK_CAPTIONER),
        (vlgen.t2i.lora_trainer, "train_lora", SHRINK_LORA),
    ):
        real = getattr(vlgen, name)  # resolved (and kept in vlgen) before either patch: the undo restores it
        wrapped = shrunk(name, real, shrink)
        monkeypatch.setattr(vlgen, name, wrapped)
        monkeypatch.setattr(module, name, wrapped)
    namespace: dict = {"__name__": "__example__"}
    exec(compile(code, "<example>", "exec"), namespace)
    for name in ("train_captioner", "train_lora"):  # a training example that bypassed the shrink would run long
        assert (f"{name}(" in code) <= (name in calls), f"{name} ran unshrunk"
    return namespace


@pytest.mark.parametrize(
    "index", [pytest.param(i, marks=_tier(code), id=f"readme-{i}") for i, code in enumerate(readme_examples())]
)
def test_readme_python_api_example_runs(index, inputs, tmp_path, request, monkeypatch, capsys):
    code = readme_examples()[index]
    ns = run_example(code, tmp_path, inputs, request, monkeypatch)
    assert ns, code
    _check_outputs(tmp_path, ns, code)


def _docstring_params() -> list:
    """One param per exported name with an example; its tier from the example's text (read from the module's
    source, so collecting imports nothing heavy)."""
    params = []
    for name in sorted(set(vlgen.__all__) - NO_EXAMPLE - {"__version__"}):
        source = Path(importlib.util.find_spec(vlgen._EXPORTS[name]).origin).read_text()
        node = next(
            n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name
        )
        params.append(pytest.param(name, marks=_tier(docstring_example_text(ast.get_docstring(node)) or ""), id=name))
    return params


@pytest.mark.parametrize("name", _docstring_params())
def test_docstring_example_runs(name, inputs, tmp_path, request, monkeypatch, capsys):
    code = docstring_example(getattr(vlgen, name))
    assert code, f"vlgen.{name}'s docstring has no 'Example::' block"
    assert "vlgen." in code and "import vlgen" in code, "examples use the public `vlgen.NAME` API"
    ns = run_example(code, tmp_path, inputs, request, monkeypatch)
    _check_outputs(tmp_path, ns, code)


def _check_outputs(workdir: Path, ns: dict, code: str) -> None:
    """What the examples promise, where they made it: captions are strings, images are images, runs were written."""
    if "captions" in ns:
        assert ns["captions"] and all(isinstance(c, str) for c in ns["captions"])
    if "images" in ns:
        assert ns["images"] and all(hasattr(im, "size") for im in ns["images"])
    if (workdir / "captions.jsonl").exists():
        rows = [json.loads(x) for x in (workdir / "captions.jsonl").read_text().splitlines()]
        assert {r["file_name"] for r in rows} == {p.name for p in (workdir / "photos").iterdir()}
    if "train_captioner(" in code:
        assert (workdir / "runs/blip/best/config.json").is_file()
    if "train_lora(" in code:
        assert (workdir / "runs/3dicon/pytorch_lora_weights.safetensors").is_file()


# --- the wrappers give what the commands give -----------------------------------------------------------------


def test_caption_gives_the_captions_vlgen_caption_writes(inputs, tiny_blip_dir, tmp_path, monkeypatch):
    """Paths and PIL images (any mode) through `vlgen.caption` get the captions `vlgen caption` writes; a loaded
    Captioner can be passed instead of a reference; one image alone is a list of one."""
    from PIL import Image

    from vlgen.cli import main

    monkeypatch.setenv("VLGEN_PROGRESS", "0")
    photos = sorted(inputs["photos"].iterdir())
    out = tmp_path / "c.jsonl"
    assert main(["caption", str(inputs["photos"]), "--model", str(tiny_blip_dir), "--out", str(out),
                 "--num-beams", "2", "--max-new-tokens", "8", "--device", "cpu"]) == 0  # fmt: skip
    cli = {r["file_name"]: r["caption"] for r in map(json.loads, out.read_text().splitlines())}
    by_path = vlgen.caption(photos, model=tiny_blip_dir, num_beams=2, max_new_tokens=8, batch_size=2, device="cpu")
    assert by_path == [cli[p.name] for p in photos]
    captioner = vlgen.load_captioner(tiny_blip_dir)
    pil = [Image.open(p).convert("RGBA") for p in photos]  # converted to RGB as a file is
    assert vlgen.caption(pil, model=captioner, num_beams=2, max_new_tokens=8) == by_path
    assert vlgen.caption(photos[0], model=captioner, num_beams=2, max_new_tokens=8) == by_path[:1]
    with pytest.raises(vlgen.VlgenError, match="num_beams"):
        vlgen.caption(photos, model=captioner, num_beams=0)


def test_caption_folder_resumes_and_checks_out_before_loading(inputs, tiny_blip_dir, tmp_path):
    out = tmp_path / "captions.jsonl"
    first = vlgen.caption_folder(inputs["photos"], out, model=tiny_blip_dir, max_new_tokens=8, device="cpu")
    again = vlgen.caption_folder([inputs["photos"]], out, model=tiny_blip_dir, max_new_tokens=8, device="cpu")
    assert (first.captioned, first.already_done, again.captioned, again.already_done) == (3, 0, 0, 3)
    assert len(out.read_text().splitlines()) == 3
    other = tmp_path / "other.jsonl"
    other.write_text('{"not": "a caption row"}\n')
    with pytest.raises(vlgen.VlgenError, match="not a vlgen caption file"):
        vlgen.caption_folder(inputs["photos"], other, model="/no/such/model")  # refused before the model loads


def test_text_to_image_gives_the_images_vlgen_generate_writes(tiny_sdxl_dir, tiny_lora, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from vlgen.cli import main

    monkeypatch.setenv("VLGEN_PROGRESS", "0")
    prompts = ["a 3D icon of a rocket in the style of TOK", "a red circle"]
    settings = ["--num-inference-steps", "3", "--guidance-scale", "4.0", "--seed", "7"]
    argv = ["generate", *prompts, "--base", str(tiny_sdxl_dir), "--lora", str(tiny_lora), "--lora-scale", "0.5"]
    assert main([*argv, *settings, "--out", str(tmp_path / "gen"), "--device", "cpu"]) == 0
    images = vlgen.text_to_image(
        prompts, base=str(tiny_sdxl_dir), lora=tiny_lora, lora_scale=0.5, num_inference_steps=3, guidance_scale=4.0,
        seed=7, device="cpu",
    )  # fmt: skip
    for i, image in enumerate(images):
        written = np.asarray(Image.open(tmp_path / "gen" / f"{i:04d}.png"))
        assert np.array_equal(np.asarray(image), written), i
    with pytest.raises(vlgen.VlgenError, match="num-inference-steps"):
        vlgen.text_to_image("a red circle", base=str(tiny_sdxl_dir), num_inference_steps=0)
