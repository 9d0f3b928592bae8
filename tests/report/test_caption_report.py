"""The --out artifacts, built from hand-made scores (no metric computation here)."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from vlgen.errors import ConfigError
from vlgen.metrics import METRIC_KEYS, CaptionScores
from vlgen.report.captions import rank_examples, write_caption_report
from vlgen.report.predictions import CaptionItem


def _scores(values):
    corpus = dict.fromkeys(METRIC_KEYS)
    corpus["BLEU-4"] = sum(values) / len(values)
    return CaptionScores(corpus=corpus, per_item=[{"BLEU-4": v} for v in values], settings={"unavailable": {}})


def test_rank_examples_best_worst_and_ties_in_file_order():
    best, worst = rank_examples(_scores([0.2, 0.9, 0.2, 0.5]), "BLEU-4", 2)
    assert best == [1, 3] and worst == [0, 2]
    with pytest.raises(ConfigError, match="CIDEr"):
        rank_examples(_scores([0.1]), "CIDEr", 1)


def test_report_files_and_thumbnails(tmp_path):
    images = []
    for i in range(4):
        p = tmp_path / "data" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (40, 30), (60 * i, 100, 200)).save(p)
        images.append(p)
    items = [CaptionItem(f"pred <{i}>", [f"ref {i}", "other ref"], line=i + 1, file_name=f"{i}.png", image=images[i])
             for i in range(4)]  # fmt: skip
    files = write_caption_report(tmp_path / "out", items, _scores([0.1, 0.4, 0.3, 0.9]), k=2, source="p.jsonl")
    out = tmp_path / "out"
    for name in ("metrics.json", "per_item.jsonl", "examples.json", "examples.md", "lengths.png", "report.html"):
        assert (out / name).is_file(), name
    assert (out / "lengths.png").read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(x) for x in (out / "per_item.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4] and rows[3]["BLEU-4"] == 0.9
    ex = json.loads((out / "examples.json").read_text())
    assert [r["index"] for r in ex["best"]] == [3, 1] and [r["index"] for r in ex["worst"]] == [0, 2]
    page = files["report"].read_text()
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert "lengths.png" in srcs and len([s for s in srcs if s.startswith("thumbs/")]) == 4
    assert all((out / s).is_file() for s in srcs)
    assert "pred &lt;3&gt;" in page  # captions are escaped
