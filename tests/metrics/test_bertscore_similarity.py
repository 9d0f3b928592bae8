"""BERTScore and prompt similarity against bert-score / sentence-transformers called directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlgen.errors import ModelNotAvailableError
from vlgen.metrics import compute_caption_metrics
from vlgen.metrics.bertscore import resolve_bertscore_model


def test_default_model_offline_falls_back_to_packaged_minilm(monkeypatch, minilm_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = resolve_bertscore_model()
    if m.name == "roberta-large":
        pytest.skip("roberta-large is in the local hub cache")
    assert (m.name, m.path, m.num_layers, m.source) == ("all-MiniLM-L6-v2", minilm_dir, 6, "packaged")
    assert "roberta-large" in m.reason


def test_local_model_dir_uses_all_layers_unless_told(minilm_dir):
    assert resolve_bertscore_model(minilm_dir).num_layers == 6
    assert resolve_bertscore_model(minilm_dir, num_layers=3).num_layers == 3
    with pytest.raises(ModelNotAvailableError):
        resolve_bertscore_model("/no/such/model/dir")


@pytest.fixture(scope="module")
def scored(coco_items, minilm_dir):
    preds, refs = coco_items
    return compute_caption_metrics(preds, refs, metrics="bertscore,prompt_similarity", bertscore_model=minilm_dir)


def test_bertscore_matches_bert_score_library(coco_items, minilm_dir, scored):
    import bert_score

    preds, refs = coco_items
    _, _, f = bert_score.score(preds, refs, model_type=minilm_dir, num_layers=6, batch_size=8)
    assert scored.corpus["BERTScore"] == pytest.approx(f.mean().item(), abs=1e-4)
    assert [r["BERTScore"] for r in scored.per_item] == pytest.approx(f.tolist(), abs=1e-4)
    settings = scored.settings["bertscore"]
    assert settings["path"] == minilm_dir and settings["num_layers"] == 6
    json.dumps(scored.settings)  # settings must be JSON as written to metrics.json


def test_bertscore_survives_empty_prediction(minilm_dir):
    s = compute_caption_metrics(["", "a dog on grass"], [["a cat"], ["a dog on the grass"]], metrics="bertscore",
                                bertscore_model=minilm_dir)  # fmt: skip
    assert s.per_item[0]["BERTScore"] == 0.0 and s.per_item[1]["BERTScore"] > 0.8


def test_prompt_similarity_is_mean_cosine_of_minilm_embeddings(coco_items, minilm_dir, scored):
    from sentence_transformers import SentenceTransformer

    preds, refs = coco_items
    model = SentenceTransformer(minilm_dir, device="cpu")
    expected = []
    for p, rs in zip(preds, refs, strict=True):
        e = model.encode([p, *rs])
        cos = [float(e[0] @ e[j] / ((e[0] @ e[0]) ** 0.5 * (e[j] @ e[j]) ** 0.5)) for j in range(1, len(e))]
        expected.append(sum(cos) / len(cos))
    assert [r["prompt_similarity"] for r in scored.per_item] == pytest.approx(expected, abs=1e-4)
    assert scored.corpus["prompt_similarity"] == pytest.approx(sum(expected) / len(expected), abs=1e-4)


def test_combined_uses_configured_weights(coco_items, minilm_dir):
    preds, refs = coco_items
    s = compute_caption_metrics(preds[:3], refs[:3], metrics="coco,bertscore,combined", bertscore_model=minilm_dir,
                                combined_weights=(0.5, 0.5))  # fmt: skip
    assert s.corpus["combined"] == pytest.approx(0.5 * s.corpus["BERTScore"] + 0.5 * s.corpus["BLEU-4"])
    assert s.settings["combined"]["weights"] == [0.5, 0.5]
    row = s.per_item[0]
    assert row["combined"] == pytest.approx(0.5 * row["BERTScore"] + 0.5 * row["BLEU-4"])


def test_combined_without_bleu_is_null_with_reason(minilm_dir):
    s = compute_caption_metrics(["a dog"], [["a dog"]], metrics="combined", bertscore_model=minilm_dir)
    assert s.corpus["combined"] is None and "coco" in s.settings["unavailable"]["combined"]
    assert Path(minilm_dir).is_dir()
