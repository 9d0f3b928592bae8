"""CLIPScore / RefCLIPScore (Hessel et al. 2021) on the tiny CLIP of vlgen.testing: the values against a hand
computation from the model's own embeddings, the formulas on crafted vectors, and `vlgen evaluate captions
--clip-model` with and without references (JSON keys, one-line errors)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vlgen.cli import main
from vlgen.metrics.clipscore import (
    CLIPSCORE_PREFIX,
    best_reference_cosine,
    clipscore_from_embeddings,
    compute_clipscore,
    harmonic_mean,
)
from vlgen.metrics.image.clip import clip_t_scores, load_clip
from vlgen.metrics.text import METRIC_KEYS, compute_caption_metrics

CAPTIONS = ["a red circle", "a brown dog on the grass", "two cats on a mat"]
REFERENCES = [["a red disc", "a circle"], ["a dog lying on a lawn"], ["cats", "two kittens on a rug", "a mat"]]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLGEN_PROGRESS", "0")


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    return load_clip(str(tiny_clip_dir))


def _images(n=3):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)) for _ in range(n)]


def _hand_embeddings(clip, images, texts):
    """The model's own forward passes, written out: processor -> get_*_features -> L2-normalised rows."""
    with torch.no_grad():
        pixel_values = clip.processor(images=images, return_tensors="pt")["pixel_values"]
        img = clip.model.get_image_features(pixel_values=pixel_values)
        enc = clip.processor.tokenizer(texts, padding=True, return_tensors="pt")
        txt = clip.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    img = img if isinstance(img, torch.Tensor) else img.pooler_output
    txt = txt if isinstance(txt, torch.Tensor) else txt.pooler_output
    return torch.nn.functional.normalize(img.double(), dim=-1), torch.nn.functional.normalize(txt.double(), dim=-1)


def test_values_equal_a_hand_computation(clip):
    images = _images()
    scores = compute_clipscore(images, CAPTIONS, REFERENCES, clip_model=clip, batch_size=2)  # 2 batches
    img, cap = _hand_embeddings(clip, images, ["A photo depicts " + c for c in CAPTIONS])
    cos = (img * cap).sum(-1)
    expected = [2.5 * max(float(c), 0.0) for c in cos]
    assert [row["CLIPScore"] for row in scores.per_item] == pytest.approx(expected, abs=1e-5)
    assert scores.corpus["CLIPScore"] == pytest.approx(sum(expected) / 3, abs=1e-5)
    ref_expected = []
    for i, refs in enumerate(REFERENCES):
        _, r = _hand_embeddings(clip, images[:1], ["A photo depicts " + x for x in refs])
        best = max(max(float(cap[i] @ r[j]) for j in range(len(refs))), 0.0)
        a = expected[i]
        ref_expected.append(0.0 if a + best == 0 else 2 * a * best / (a + best))
    assert [row["RefCLIPScore"] for row in scores.per_item] == pytest.approx(ref_expected, abs=1e-5)
    assert scores.corpus["RefCLIPScore"] == pytest.approx(sum(ref_expected) / 3, abs=1e-5)
    s = scores.settings
    assert s["prefix"] == CLIPSCORE_PREFIX == "A photo depicts " and s["w"] == 2.5 and s["truncated_captions"] == 0


def test_prefix_and_scale_differ_from_clip_t(clip):
    """CLIP-T (evaluate images) is 100 * max(cos, 0) of the bare text; CLIPScore prefixes and scales by 2.5."""
    images = _images()
    scores = compute_clipscore(images, CAPTIONS, clip_model=clip)
    img, bare = _hand_embeddings(clip, images, CAPTIONS)
    clip_t = clip_t_scores(img, bare)
    assert all("RefCLIPScore" not in row for row in scores.per_item) and scores.corpus["RefCLIPScore"] is None
    assert [row["CLIPScore"] for row in scores.per_item] != pytest.approx((clip_t / 40).tolist(), abs=1e-6)


def test_formulas_on_crafted_vectors():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    cap = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 5.0]])  # cos 1/sqrt2, -1 (clamped to 0), 1
    s = clipscore_from_embeddings(img, cap)
    assert s.tolist() == pytest.approx([2.5 / 2**0.5, 0.0, 2.5])
    refs = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, -1.0]])]
    best = best_reference_cosine(cap, refs)  # max over refs; a negative best is clamped to 0 (the paper's max(., 0))
    assert best.tolist() == pytest.approx([1 / 2**0.5, 0.0, 0.0])
    h = harmonic_mean(s, best)
    a, b = 2.5 / 2**0.5, 1 / 2**0.5
    assert h.tolist() == pytest.approx([2 * a * b / (a + b), 0.0, 0.0])  # H-mean(x, 0) = 0, no 0/0
    with pytest.raises(ValueError, match="no references"):
        compute_clipscore(_images(1), ["x"], [[]], clip_model=object())


def test_caption_metrics_without_references(clip):
    scores = compute_caption_metrics(CAPTIONS, None, images=_images(), clip_model=clip)
    obj = scores.to_json()
    assert list(obj)[-4:] == ["CLIPScore", "RefCLIPScore", "n", "settings"] and list(obj)[:-2] == list(METRIC_KEYS)
    assert obj["CLIPScore"] is not None and all(obj[k] is None for k in METRIC_KEYS if k != "CLIPScore")
    assert "no references" in obj["settings"]["unavailable"]["RefCLIPScore"]
    assert "no references" in obj["settings"]["unavailable"]["BLEU-4"]
    assert [row for row in scores.per_item] == [{"CLIPScore": pytest.approx(r["CLIPScore"])} for r in scores.per_item]


def test_caption_metrics_with_references_and_without_a_model(clip):
    scores = compute_caption_metrics(CAPTIONS, REFERENCES, metrics="rouge", images=_images(), clip_model=clip)
    assert scores.corpus["ROUGE-1"] is not None and scores.corpus["RefCLIPScore"] is not None
    assert set(scores.per_item[0]) == {"ROUGE-1", "ROUGE-2", "CLIPScore", "RefCLIPScore"}
    plain = compute_caption_metrics(CAPTIONS, REFERENCES, metrics="rouge")
    assert plain.corpus["CLIPScore"] is None and plain.settings["unavailable"]["CLIPScore"] == "not requested"
    everything = compute_caption_metrics(CAPTIONS, REFERENCES, metrics="rouge,clipscore")
    assert "--clip-model" in everything.settings["unavailable"]["CLIPScore"]


# --- vlgen evaluate captions --clip-model ---------------------------------------------------------------------


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i, im in enumerate(_images()):
        im.save(d / f"{i}.png")
    return d


def _run(argv, capsys):
    rc = main(["evaluate", "captions", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _fails(argv, capsys, *needles):
    rc, out, err = _run(argv, capsys)
    assert rc == 1 and out == "", (out, err)
    assert "Traceback" not in err and err.count("error:") == 1 and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert str(n) in err, err
    return err


def test_cli_without_references(tmp_path, photos, tiny_clip_dir, clip, capsys):
    """`vlgen caption` output ({file_name, caption}) and the folder it captioned: CLIPScore only."""
    pred = _write(tmp_path / "caps.jsonl", [{"file_name": f"{i}.png", "caption": c} for i, c in enumerate(CAPTIONS)])
    rc, out, err = _run([pred, "--clip-model", tiny_clip_dir, "--images", photos, "--json"], capsys)
    assert rc == 0, err
    obj = json.loads(out)
    assert list(obj) == [*METRIC_KEYS, "n", "settings"] and obj["n"] == 3
    images = [Image.open(photos / f"{i}.png") for i in range(3)]
    assert obj["CLIPScore"] == pytest.approx(compute_clipscore(images, CAPTIONS, clip_model=clip).corpus["CLIPScore"])
    assert obj["RefCLIPScore"] is None and obj["settings"]["clipscore"]["model"] == str(tiny_clip_dir)
    assert obj["settings"]["images"] == str(photos)
    rc, out, err = _run([pred, "--clip-model", tiny_clip_dir, "--images", photos], capsys)  # the table
    assert rc == 0 and "CLIPScore" in out and "RefCLIPScore" in out and "no references" in out


def test_cli_with_references_from_data(tmp_path, photos, tiny_clip_dir, clip, capsys):
    rows = [{"file_name": f"{i}.png", "text": refs} for i, refs in enumerate(REFERENCES)]
    _write(photos / "metadata.jsonl", rows)
    pred = _write(tmp_path / "caps.jsonl", [{"file_name": f"{i}.png", "caption": c} for i, c in enumerate(CAPTIONS)])
    out_dir = tmp_path / "eval"
    argv = [pred, "--data", photos, "--clip-model", tiny_clip_dir, "--metrics", "rouge", "--json", "--out", out_dir]
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    obj = json.loads(out)
    images = [Image.open(photos / f"{i}.png") for i in range(3)]
    ref = compute_clipscore(images, CAPTIONS, REFERENCES, clip_model=clip)
    assert obj["CLIPScore"] == pytest.approx(ref.corpus["CLIPScore"])
    assert obj["RefCLIPScore"] == pytest.approx(ref.corpus["RefCLIPScore"]) and obj["ROUGE-1"] is not None
    per_item = [json.loads(x) for x in (out_dir / "per_item.jsonl").read_text().splitlines()]
    assert [r["RefCLIPScore"] for r in per_item] == pytest.approx([r["RefCLIPScore"] for r in ref.per_item])
    # self-contained lines (prediction + references + file_name) with --images: the same numbers
    lines = [{"prediction": c, "references": r, "file_name": f"{i}.png"} for i, (c, r) in enumerate(zip(CAPTIONS,
             REFERENCES, strict=True))]  # fmt: skip
    pred2 = _write(tmp_path / "pred.jsonl", lines)
    rc, out, err = _run(
        [pred2, "--images", photos, "--clip-model", tiny_clip_dir, "--metrics", "rouge", "--json"], capsys
    )
    assert rc == 0, err
    assert json.loads(out)["RefCLIPScore"] == pytest.approx(obj["RefCLIPScore"])


def test_cli_errors_are_one_line(tmp_path, photos, tiny_clip_dir, capsys):
    clip = ["--clip-model", tiny_clip_dir]
    pred = _write(
        tmp_path / "caps.jsonl", [{"file_name": "0.png", "caption": "a"}, {"file_name": "9.png", "caption": "b"}]
    )
    _fails([pred, *clip, "--images", photos], capsys, photos / "9.png", "not found")  # missing image file
    (photos / "1.png").write_bytes(b"not an image")
    bad = _write(tmp_path / "bad.jsonl", [{"file_name": "1.png", "caption": "a"}])
    _fails([bad, *clip, "--images", photos], capsys, photos / "1.png")  # unreadable image
    _fails([bad, *clip], capsys, f"{bad}:1:", "--images")  # a caption with no image to score it on
    nofile = _write(tmp_path / "nofile.jsonl", [{"caption": "a"}])
    _fails([nofile, *clip, "--images", photos], capsys, f"{nofile}:1:", "file_name")
    mixed = _write(tmp_path / "mixed.jsonl", [{"file_name": "0.png", "caption": "a", "references": ["x"]},
                                               {"file_name": "2.png", "caption": "b"}])  # fmt: skip
    _fails([mixed, *clip, "--images", photos], capsys, f"{mixed}:2:", "references")
    _fails([pred, "--images", photos], capsys, "--clip-model")  # --images alone
    # without --clip-model, lines without references are still an error, as before
    _fails([bad, "--metrics", "rouge"], capsys, f"{bad}:1:", "--data")


def test_cli_clip_model_offline_not_cached_names_the_option(tmp_path, photos, monkeypatch, capsys):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    pred = _write(tmp_path / "caps.jsonl", [{"file_name": "0.png", "caption": "a"}])
    err = _fails([pred, "--clip-model", "openai/clip-vit-base-patch32", "--images", photos], capsys)
    assert "openai/clip-vit-base-patch32" in err and "--clip-model" in err and "not in the local cache" in err


def test_cli_out_without_references_and_compare(tmp_path, photos, tiny_clip_dir, capsys):
    """--out writes the report for a reference-free run (the length plot draws predictions only, warns nothing);
    compare of two metrics.json made with different CLIP models says their CLIPScores are not comparable."""
    pred = _write(tmp_path / "caps.jsonl", [{"file_name": f"{i}.png", "caption": c} for i, c in enumerate(CAPTIONS)])
    out_dir = tmp_path / "eval"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's mean of an empty reference list
        rc, _, err = _run([pred, "--images", photos, "--clip-model", tiny_clip_dir, "--out", out_dir], capsys)
    assert rc == 0, err
    rows = [json.loads(x) for x in (out_dir / "per_item.jsonl").read_text().splitlines()]
    assert [set(r) - {"index", "line", "file_name", "prediction", "references"} for r in rows] == [{"CLIPScore"}] * 3
    examples = json.loads((out_dir / "examples.json").read_text())
    assert examples["rank_by"] == "CLIPScore" and (out_dir / "lengths.png").stat().st_size > 0
    other = json.loads((out_dir / "metrics.json").read_text())
    other["settings"]["clipscore"]["model"] = "openai/clip-vit-base-patch32"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["evaluate", "compare", str(out_dir / "metrics.json"), str(tmp_path / "other.json")]) == 0
    err = capsys.readouterr().err
    assert "CLIPScore of A used" in err and "not comparable" in err
