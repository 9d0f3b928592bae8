"""benchmarks/bench_caption_florence.py (issue 18 item 6): its fixed-length, cross-method logic on the tiny Florence-2.

The benchmark itself (Florence-2-base at 768 px, minutes per repeat) is never run here; `--tiny` runs the same code
on the tiny model: every method generates exactly the requested tokens, the captions of all three methods are
compared, and the JSON carries what the README's table is made from.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmark_scripts import import_benchmark


def _bench():
    return import_benchmark("bench_caption_florence")


def test_fixed_length_captioner_generates_exactly_n_tokens_with_the_fast_path(tmp_path, monkeypatch):
    from PIL import Image

    bench = _bench()
    model, processor = bench.build_florence(tiny=True)
    captioner = bench.fixed_length_captioner(model, processor, 7)
    assert captioner.fast_path and captioner.prompt == bench.PROMPT
    shapes = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: shapes.append(tuple(real(**kw).shape)) or real(**kw))
    images = [Image.open(p).convert("RGB") for p in bench.write_images(tmp_path, 3, 0, (160, 120))]
    rows = captioner.caption_rows(images, max_new_tokens=7)  # what caption_images calls: no min_new_tokens given
    assert shapes == [(3, 1 + 7)]  # </s> start + exactly 7 new tokens, for every image
    assert all(r.get("truncated") for r in rows)  # the 7th is the forced </s> at the limit


def test_vision_gflop_of_florence_2_base_at_768():
    """The floor's numerator, counted on the meta device: convolutions 19.0 + linears 347.9 + attention 12.9."""
    from vlgen.testing.published import published_model

    bench = _bench()
    model = published_model("florence-2-base", device="meta")
    attention = model.config.vision_config._attn_implementation
    assert bench.vision_gflop(model, 768) == pytest.approx(379.78, abs=0.01)
    assert model.config.vision_config._attn_implementation == attention  # a copy was set to eager, not the model


@pytest.mark.slow
def test_tiny_run_compares_every_method_and_writes_the_json(tmp_path):
    bench = _bench()
    out = tmp_path / "florence.json"
    argv = ["--tiny", "--images", "8", "--encoder-images", "2", "--repeats", "1", "--max-new-tokens", "5"]
    r = bench.main([*argv, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["max_new_tokens"] == 5 and r["images"] == 8 and r["encoder_images"] == 2 and r["image_size"] == 64
    med = r["s_per_image"]
    assert set(med) == {"vlgen_caption", "pipeline", "generate_batch8", "encoder_eager", "encoder_vlgen"}
    assert all(v > 0 for v in med.values()) and set(r["cpu_s_per_image"]) == set(med)
    assert math.isclose(r["vlgen_speedup_vs_pipeline"], med["pipeline"] / med["vlgen_caption"])
    assert math.isclose(r["encoder_vs_floor"]["encoder_vlgen"], med["encoder_vlgen"] / r["encoder_floor_s_per_image"])
    assert r["captions_identical"] == {"vlgen_caption": True, "pipeline": True}
    assert r["encoder_outputs_allclose"] and r["generate_logits_max_abs_diff"] < 1e-4
    assert r["example_caption"]  # the tiny model's random captions are not empty
