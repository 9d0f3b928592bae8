"""Properties every caption metric should have, and input checking (no models beyond the packaged MiniLM)."""

from __future__ import annotations

import random
import shutil

import pytest

from vlgen.errors import ConfigError, DataError
from vlgen.metrics import METRIC_KEYS, compute_caption_metrics
from vlgen.metrics import coco as coco_mod

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")
LEXICAL = "coco,sacrebleu,rouge"


@needs_java
def test_prediction_equal_to_a_reference_scores_bleu_one(coco_items):
    _, refs = coco_items
    preds = [rs[2] for rs in refs]  # every reference here has >= 4 words
    s = compute_caption_metrics(preds, refs, metrics=LEXICAL)
    for n in range(1, 5):
        assert s.corpus[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
        assert all(row[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6) for row in s.per_item)
    assert s.corpus["sacreBLEU"] == pytest.approx(1.0)
    assert s.corpus["ROUGE-1"] == pytest.approx(1.0)
    assert s.corpus["ROUGE-L"] == pytest.approx(1.0)


@needs_java
def test_corpus_scores_do_not_depend_on_order(coco_items):
    preds, refs = coco_items
    order = list(range(len(preds)))
    random.Random(0).shuffle(order)
    a = compute_caption_metrics(preds, refs, metrics=LEXICAL)
    b = compute_caption_metrics([preds[i] for i in order], [refs[i] for i in order], metrics=LEXICAL)
    for key in METRIC_KEYS:
        if a.corpus[key] is not None:
            assert b.corpus[key] == pytest.approx(a.corpus[key], abs=1e-12), key
    # per-item scores travel with their item
    assert [b.per_item[j]["CIDEr"] for j in range(len(order))] == pytest.approx([a.per_item[i]["CIDEr"] for i in order])


@needs_java
def test_empty_prediction_is_scored_not_dropped(coco_items):
    preds, refs = coco_items
    preds = ["", *preds[1:]]
    s = compute_caption_metrics(preds, refs, metrics=LEXICAL)
    assert s.n == len(preds)
    for key in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "ROUGE-1"):
        assert s.per_item[0][key] == 0.0


def test_missing_java_is_a_clear_error_and_other_metrics_still_work(monkeypatch, coco_items):
    preds, refs = coco_items
    real_which = shutil.which
    monkeypatch.setattr(coco_mod.shutil, "which", lambda name: None if name == "java" else real_which(name))
    with pytest.raises(coco_mod.JavaNotFoundError, match="Java runtime"):
        compute_caption_metrics(preds, refs, metrics="coco")
    s = compute_caption_metrics(preds, refs, metrics="sacrebleu,rouge")
    assert s.corpus["BLEU-4"] is None and s.corpus["sacreBLEU"] > 0


@pytest.mark.parametrize(
    ("preds", "refs", "match"),
    [
        ([], [], "no predictions"),
        (["a dog"], [[]], "empty reference list"),
        ([None], [["a dog"]], "prediction is NoneType"),
        (["a dog"], [["a dog", ""]], "reference"),
        (["a dog"], ["a dog"], "list of strings"),
        (["a", "b"], [["a"]], "2 predictions but 1"),
    ],
)
def test_bad_inputs_raise_data_error(preds, refs, match):
    with pytest.raises(DataError, match=match):
        compute_caption_metrics(preds, refs, metrics="sacrebleu")


def test_unknown_metric_group_and_weights():
    with pytest.raises(ConfigError, match="bleurt"):
        compute_caption_metrics(["a b"], [["a b"]], metrics="bleurt")
    with pytest.raises(ConfigError, match="weights"):
        compute_caption_metrics(["a b"], [["a b"]], metrics="sacrebleu", combined_weights=(0.5,))


def test_to_json_has_every_key_and_unrequested_are_null():
    s = compute_caption_metrics(["a dog runs"], [["a dog runs fast"]], metrics="rouge")
    obj = s.to_json()
    assert list(obj) == [*METRIC_KEYS, "n", "settings"]
    assert obj["BLEU-4"] is None and obj["settings"]["unavailable"]["BLEU-4"] == "not requested"
    assert obj["n"] == 1
