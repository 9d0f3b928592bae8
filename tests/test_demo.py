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
        assert (quick_demo / "gen" / name / "metadata.jsonl").is_file()
        metrics = json.loads((quick_demo / f"eval-images-{name}" / "metrics.json").read_text())
        assert metrics["Gram"] is not None
    assert (quick_demo / "gen" / "compare.png").is_file()
    assert (quick_demo / "models" / "base" / "model_index.json").is_file()  # the fused base
    summary = json.loads((quick_demo / "demo_summary.json").read_text())
    assert set(summary["image_metrics"]) == {"base", "lora"}


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
