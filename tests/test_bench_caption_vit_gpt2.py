"""benchmarks/bench_caption_vit_gpt2.py (issue 19 item 5): its fixed-length, cross-method logic on the tiny ViT-GPT2.

The benchmark itself (the published architecture at 224 px, minutes per repeat) is never run here; `--tiny` runs the
same code on the tiny model: every method generates exactly the requested tokens, the captions of all methods are
compared, and the JSON carries what the README's table is made from.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmark_scripts import import_benchmark


def _bench():
    return import_benchmark("bench_caption_vit_gpt2")


def test_fixed_length_captioner_generates_exactly_n_tokens_with_the_fast_path(tmp_path, monkeypatch):
    from PIL import Image

    bench = _bench()
    model, image_processor, tokenizer = bench.build_vit_gpt2(tiny=True)
    captioner = bench.fixed_length_captioner(model, image_processor, tokenizer, 7)
    assert captioner.fast_path
    shapes = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: shapes.append(tuple(real(**kw).shape)) or real(**kw))
    images = [Image.open(p).convert("RGB") for p in bench.write_images(tmp_path, 3, 0, (160, 120))]
    captioner.caption_rows(images, max_new_tokens=7)  # what caption_images calls: no min_new_tokens given
    assert shapes == [(3, 1 + 7)]  # <|endoftext|> start + exactly 7 new tokens, for every image


def test_pipeline_with_the_caption_processor_generates_what_plain_generate_does(tmp_path):
    """transformers 5's image-text-to-text pipeline over a VisionEncoderDecoder needs the small processor the
    benchmark builds; through it the pipeline's ids are plain `generate`'s."""
    from PIL import Image
    from transformers import pipeline

    bench = _bench()
    model, image_processor, tokenizer = bench.build_vit_gpt2(tiny=True)
    pipe = pipeline("image-text-to-text", model=model, processor=bench.caption_processor(image_processor, tokenizer))
    fixed = bench.fixed_kwargs(6)
    for path in bench.write_images(tmp_path, 2, 0, (160, 120)):
        got = pipe(str(path), text="", generate_kwargs=fixed, return_tensors=True)
        pv = image_processor(images=[Image.open(path).convert("RGB")], return_tensors="pt").pixel_values
        with torch.no_grad():
            ids = model.generate(pixel_values=pv, **fixed)
        assert got[0]["generated_token_ids"].tolist() == ids[0].tolist()


def test_padded_gpt2_tokenizer_decodes_every_id_of_the_published_vocab():
    from vlgen.testing.vit_gpt2 import gpt2_tokenizer

    tiny, padded = gpt2_tokenizer(), gpt2_tokenizer(vocab_size=50257)
    assert len(padded) == 50257 and padded.eos_token_id == 50256  # GPT-2's <|endoftext|>, nlconnect's ids
    assert padded("a red circle").input_ids == tiny("a red circle").input_ids  # encoding: the tiny BPE only
    assert padded.decode([40000, 41000]) == " w40000 w41000"
    assert padded.batch_decode([[50256, 40000, 50256]], skip_special_tokens=True) == [" w40000"]


def test_encoder_gflop_of_vit_b16_at_224():
    """The floor's numerator, counted on the meta device: ViT-B/16 at 224 px, 197 tokens."""
    from vlgen.testing.published import published_model

    bench = _bench()
    model = published_model("vit-gpt2", device="meta")
    attention = model.config.encoder._attn_implementation
    assert bench.encoder_gflop(model, 224) == pytest.approx(35.1, abs=0.05)
    assert model.config.encoder._attn_implementation == attention  # a copy was set to eager, not the model


@pytest.mark.slow
def test_tiny_run_compares_every_method_and_writes_the_json(tmp_path):
    bench = _bench()
    out = tmp_path / "vit_gpt2.json"
    r = bench.main(["--tiny", "--images", "8", "--repeats", "1", "--max-new-tokens", "5", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["max_new_tokens"] == 5 and r["images"] == 8 and r["image_size"] == 32 and r["num_beams"] == 1
    med = r["s_per_image"]
    assert set(med) == {"vlgen_caption", "vlgen_caption_plain", "pipeline", "generate_batch8", "encoder"}
    assert all(v > 0 for v in med.values()) and set(r["cpu_s_per_image"]) == set(med)
    assert math.isclose(r["vlgen_speedup_vs_pipeline"], med["pipeline"] / med["vlgen_caption"])
    assert math.isclose(r["encoder_vs_floor"], med["encoder"] / r["encoder_floor_s_per_image"])
    assert r["captions_identical"] == {"vlgen_caption": True, "vlgen_caption_plain": True, "pipeline": True}
    assert r["generate_sequences_equal"] and r["generate_logits_max_abs_diff"] < 1e-4
    assert r["example_caption"] and r["distinct_captions"] > 1  # the tiny model's random captions differ
