"""`vlgen demo` and its HTML reports: the files they reference exist, and they render in headless Chromium.

The full demo (`--quick`) takes minutes on 2 CPU cores, so it is `slow`; the fast tier opens the report of
`vlgen evaluate captions --out` (the page the demo links to for per-image examples) in the browser instead.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "serving"))  # the CDP helper lives beside the serving tests
from cdp import Browser, find_chromium

from vlgen.cli import main

needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)

# Lazy images only load when scrolled into view: make them eager, then wait until each has finished.
_IMAGES_DONE = (
    "(() => { const imgs = [...document.images]; imgs.forEach(i => i.loading = 'eager');"
    " return imgs.every(i => i.complete); })()"
)


def _local_refs(report: Path) -> list[str]:
    """src/href targets of a page that are files next to it (not data: URIs, anchors or web addresses)."""
    refs = re.findall(r'(?:src|href)="([^"]+)"', report.read_text())
    return [r for r in refs if not r.startswith(("data:", "#", "http:", "https:"))]


def _check_in_browser(report: Path, min_tables: int) -> dict:
    with Browser.launch() as browser:
        page = browser.page()
        page.navigate(report.resolve().as_uri())
        page.wait_for("document.readyState === 'complete'")
        page.wait_for(_IMAGES_DONE)
        info = json.loads(
            page.eval(
                "JSON.stringify({n: document.images.length,"
                " broken: [...document.images].filter(i => !(i.naturalWidth > 0))"
                ".map(i => i.alt || i.src.slice(0, 40)),"
                " tables: document.querySelectorAll('table').length,"
                " text: document.body.innerText})"
            )
        )
        page.close()
    assert info["n"] > 0 and info["broken"] == [], info["broken"]
    assert info["tables"] >= min_tables
    assert "BLEU-4" in info["text"]
    return info


@pytest.fixture(scope="module")
def caption_report(tmp_path_factory: pytest.TempPathFactory, tiny_cnn_lstm_dir: Path) -> Path:
    """`vlgen evaluate captions --out` on 12 synthetic images captioned by the tiny CNN-LSTM (seconds)."""
    tmp = tmp_path_factory.mktemp("caption-report")
    data, preds = tmp / "data", tmp / "preds.jsonl"
    assert main(["data", "synth", str(data), "--n", "12", "--seed", "0"]) == 0
    assert main(["caption", str(data), "--model", str(tiny_cnn_lstm_dir), "--out", str(preds)]
                + ["--num-beams", "1", "--device", "cpu"]) == 0  # fmt: skip
    assert main(["evaluate", "captions", str(preds), "--data", str(data), "--metrics", "coco"]
                + ["--out", str(tmp / "eval"), "--top-k", "2"]) == 0  # fmt: skip
    return tmp / "eval" / "report.html"


def test_caption_report_references_existing_files(caption_report: Path) -> None:
    for ref in _local_refs(caption_report):
        assert (caption_report.parent / ref).is_file(), ref


@needs_chromium
def test_caption_report_renders_in_chromium(caption_report: Path) -> None:
    _check_in_browser(caption_report, min_tables=1)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_quick_demo_report(quick_demo: Path) -> None:
    report = quick_demo / "report.html"
    text = report.read_text()
    for heading in ("Image → text", "Learning curves", "Text → image", "Style set", "Settings and timings"):
        assert heading in text, heading
    for ref in _local_refs(report):
        assert (report.parent / ref).is_file(), ref
    for name in ("base", "lora"):
        metrics = json.loads((quick_demo / f"eval-images-{name}" / "metrics.json").read_text())
        assert metrics["Gram"] is not None
    for name in ("floor", "base", "lora"):  # `vlgen roundtrip prompts` outputs, one image per prompt
        rows = (quick_demo / "roundtrip" / name / "metadata.jsonl").read_text().splitlines()
        assert len(rows) == 8
    assert (quick_demo / "compare.png").is_file()
    assert (quick_demo / "models" / "untrained-base" / "model_index.json").is_file()  # the floor
    summary = json.loads((quick_demo / "demo_summary.json").read_text())
    assert set(summary["image_metrics"]) == {"base", "lora"}
    assert set(summary["roundtrip"]) == {"floor", "base", "lora", "ceiling"}
    for name in ("floor", "base", "lora"):
        rt = summary["roundtrip"][name]
        assert 0.0 <= rt["shape_colour_accuracy"] <= 1.0 and rt["n"] == 8 and "BLEU-4" in rt
    # the style LoRA moves the generations towards the style set even in the quick run (issue 15)
    assert summary["image_metrics"]["lora"]["Gram"] < summary["image_metrics"]["base"]["Gram"]
    text = report.read_text()
    assert "Round trip" in text and "Where the base comes from" in text


@pytest.mark.slow
@needs_chromium
def test_quick_demo_report_renders_in_chromium(quick_demo: Path) -> None:
    info = _check_in_browser(quick_demo / "report.html", min_tables=3)  # text metrics, image metrics, timings
    assert "Text → image" in info["text"] and "Gram" in info["text"]


@pytest.mark.parametrize(("lora_gram", "verdict"), [(2e-7, "(closer to style)"), (7e-7, "(NOT closer to style)")])
def test_demo_prints_the_style_verdict(monkeypatch, tmp_path, capsys, lora_gram, verdict) -> None:
    # The CLI's summary only: run_demo itself is exercised end to end by the slow tests above.
    import vlgen.demo
    from vlgen.demo import DemoResult

    def fake_run_demo(cfg):
        images = {"base": {"Gram": 6e-7}, "lora": {"Gram": lora_gram}}
        return DemoResult(tmp_path, tmp_path / "report.html", {"BLEU-4": 0.0}, {"BLEU-4": 0.5}, {"x": 1.0}, [], images)

    monkeypatch.setattr(vlgen.demo, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"Gram distance base 6e-07, base + LoRA {lora_gram:.3g} {verdict}" in printed


def test_shape_colour_accuracy_counts_the_prompts_colour_and_shape_words() -> None:
    from vlgen.demo.scoring import content_words, shape_colour_accuracy

    prompt = "a 3D icon in the style of TOK, a small green triangle above a large yellow circle"
    assert content_words(prompt) == {"green", "triangle", "yellow", "circle"}  # the template adds none
    assert content_words("two red diamonds") == {"red", "diamond"}  # plural = singular
    scores = [
        ("a large yellow circle", 0.5),
        ("a small yellow triangle above a large green circle", 1.0),  # binding is not scored
        ("two blue squares", 0.0),
        ("a green triangles above a yellow circles", 1.0),
    ]
    for caption, expected in scores:
        assert shape_colour_accuracy([prompt], [caption])["shape_colour_accuracy"] == expected, caption
    # averaged over generations; a word asked for twice counts once; prompts without such words are skipped
    out = shape_colour_accuracy(
        [prompt, "a green circle above a green square", "a photo"],
        ["a large yellow circle", "a green circle", "a red circle"],
    )
    assert out == {"shape_colour_accuracy": (0.5 + 2 / 3) / 2, "n": 2, "skipped": 1}
    assert shape_colour_accuracy([], [])["shape_colour_accuracy"] is None
    with pytest.raises(ValueError, match="2 prompts but 1 captions"):
        shape_colour_accuracy(["a", "b"], ["a"])


def test_demo_summary_prints_the_round_trip(monkeypatch, tmp_path, capsys) -> None:
    import vlgen.demo
    from vlgen.demo import DemoResult

    roundtrip = {"floor": {"shape_colour_accuracy": 0.2}, "base": {"shape_colour_accuracy": 0.75},
                 "lora": {"shape_colour_accuracy": 0.7}, "ceiling": {"shape_colour_accuracy": 0.85}}  # fmt: skip

    def fake_run_demo(cfg):
        return DemoResult(tmp_path, tmp_path / "report.html", {}, {}, {"x": 1.0}, [], {}, roundtrip)

    monkeypatch.setattr(vlgen.demo, "run_demo", fake_run_demo)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "round trip (shape/colour words recovered): floor 0.200, base 0.750, lora 0.700, ceiling 0.850" in printed


def test_demo_base_steps_needs_train_base(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path), "--base-steps", "3"]) == 1
    assert "--base-steps only applies with --train-base OUT" in capsys.readouterr().err


def test_committed_demo_base_loads_like_any_base_and_draws_64px() -> None:
    # The weights the demo uses: a StableDiffusionXLPipeline directory of the real classes, 16x16 latents.
    from vlgen.demo.base_model import DEMO_BASE, TRAIN_INFO
    from vlgen.t2i.generate import generate_image, load_pipeline

    assert sum(f.stat().st_size for f in DEMO_BASE.rglob("*") if f.is_file()) < 20e6
    info = json.loads((DEMO_BASE / TRAIN_INFO).read_text())
    assert info["config"]["seed"] == 0 and info["retrain"].startswith("vlgen demo --train-base")
    pipe = load_pipeline(str(DEMO_BASE), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline" and pipe.unet.dtype.is_floating_point
    assert pipe.vae_scale_factor == 4 and pipe.unet.config.sample_size == 16
    image = generate_image(pipe, "a large red circle", seed=0, num_inference_steps=2)
    assert image.size == (64, 64)


@pytest.mark.slow
def test_train_demo_base_is_seeded_and_loads(tmp_path) -> None:
    # Two short runs with the same seed write identical weights; the result loads through from_pretrained.
    from vlgen.demo.base_model import DemoBaseConfig, build_untrained_base, train_demo_base
    from vlgen.t2i.generate import load_pipeline
    from vlgen.testing._common import file_digests

    data = tmp_path / "data"
    assert main(["data", "synth", str(data), "--n", "16", "--seed", "0"]) == 0
    digests = []
    for name in ("a", "b"):
        cfg = DemoBaseConfig(data=str(data), out=str(tmp_path / name), vae_steps=2, steps=3, batch_size=2)
        summary = train_demo_base(cfg, log=lambda _: None)
        assert summary["history"][-1]["step"] == 3
        digests.append({k: v for k, v in file_digests(tmp_path / name).items() if k != "train_base.json"})  # timings
    assert digests[0] == digests[1]
    floor = build_untrained_base(tmp_path / "a", tmp_path / "floor", seed=0)
    assert file_digests(floor)["unet/diffusion_pytorch_model.safetensors"] != digests[0][
        "unet/diffusion_pytorch_model.safetensors"]  # fmt: skip
    assert load_pipeline(str(floor), device="cpu").unet.config.sample_size == 16


@pytest.mark.slow
def test_train_demo_base_options_zero_terminal_snr_text_encoders_and_vae_from(tmp_path) -> None:
    # The base trainer's options for issue 15's experiments: the saved scheduler says v-prediction with zero
    # terminal SNR (what every scheduler and `vlgen train lora` read), the text encoders change when they train,
    # and vae_from takes the other base's VAE unchanged instead of fitting one.
    from vlgen.demo.base_model import DemoBaseConfig, train_demo_base
    from vlgen.t2i.generate import generate_image, load_pipeline
    from vlgen.testing._common import file_digests

    data = tmp_path / "data"
    assert main(["data", "synth", str(data), "--n", "16", "--seed", "0"]) == 0
    small = {"data": str(data), "vae_steps": 2, "steps": 2, "batch_size": 2}
    train_demo_base(DemoBaseConfig(out=str(tmp_path / "a"), **small), log=lambda _: None)
    cfg = DemoBaseConfig(out=str(tmp_path / "b"), vae_from=str(tmp_path / "a"), zero_terminal_snr=True,
                         text_encoder_lr=1e-2, **small)  # fmt: skip
    summary = train_demo_base(cfg, log=lambda _: None)
    assert summary["vae_fit"]["from"] == str(tmp_path / "a")
    a, b = file_digests(tmp_path / "a"), file_digests(tmp_path / "b")
    assert a["vae/diffusion_pytorch_model.safetensors"] == b["vae/diffusion_pytorch_model.safetensors"]
    assert a["text_encoder/model.safetensors"] != b["text_encoder/model.safetensors"]
    pipe = load_pipeline(str(tmp_path / "b"), device="cpu")
    sched = pipe.scheduler.config
    assert sched.prediction_type == "v_prediction" and sched.rescale_betas_zero_snr
    assert sched.timestep_spacing == "trailing"
    assert generate_image(pipe, "a large red circle", seed=0, num_inference_steps=2).size == (64, 64)


def test_training_prompts_suffix_and_random_style_words() -> None:
    # The base's prompt variants: the caption itself first; with affix="suffix" the generic phrase follows the
    # caption (so the caption's tokens read as they do alone in the causal text encoders), style words are
    # random letters at random_style_words=1 and never the LoRA's trigger; at 0 the draws are as before.
    import random

    from vlgen.demo.base_model import PREFIX_WORDS, training_prompts
    from vlgen.demo.t2i import STYLE_TEMPLATE, without_style

    caption = "a small green triangle above a large yellow circle"
    out = training_prompts(caption, random.Random(0), 200, 1.0, random_style_words=1.0, affix="suffix")
    assert out[0] == caption and all(p.startswith(caption + ", ") for p in out[1:])
    assert not any(p.endswith(" of") for p in out)  # "a 3D icon of" becomes "a 3D icon" behind the caption
    words = [p.rsplit(" ", 1)[-1] for p in out[1:] if "style of" in p]
    assert words and not set(words) & {*PREFIX_WORDS, "tok"} and all(3 <= len(w) <= 6 for w in words)
    prefixed = training_prompts(caption, random.Random(0), 50, 1.0)
    assert all(p.endswith(" " + caption) for p in prefixed[1:])
    assert prefixed == training_prompts(caption, random.Random(0), 50, 1.0, random_style_words=0.0, affix="prefix")
    assert without_style(STYLE_TEMPLATE.format(caption=caption)) == caption


def test_demo_base_refuses_an_unknown_affix(tmp_path) -> None:
    from vlgen.demo.base_model import DemoBaseConfig, train_demo_base
    from vlgen.errors import DataError

    data = tmp_path / "data"
    assert main(["data", "synth", str(data), "--n", "8", "--seed", "0"]) == 0
    with pytest.raises(DataError, match="affix must be 'prefix' or 'suffix', got 'middle'"):
        train_demo_base(DemoBaseConfig(data=str(data), out=str(tmp_path / "b"), affix="middle"), log=lambda _: None)
