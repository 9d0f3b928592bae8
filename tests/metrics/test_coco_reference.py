"""vlgen's coco-caption / sacreBLEU / rouge-score numbers against the libraries called the official way.

The reference path is COCOEvalCap.evaluate() without the COCO api objects: PTBTokenizer on gts and res
separately, then each pycocoevalcap scorer with its default arguments.
"""

from __future__ import annotations

import shutil

import pytest

from vlgen.metrics import compute_caption_metrics

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")


@pytest.fixture(scope="module")
def official(coco_items):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    preds, refs = coco_items
    gts = {i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)}
    res = {i: [{"caption": p}] for i, p in enumerate(preds)}
    tok = PTBTokenizer()
    gts, res = tok.tokenize(gts), tok.tokenize(res)
    out, items = {}, {}
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        out[f"BLEU-{k + 1}"], items[f"BLEU-{k + 1}"] = bleu[k], bleu_items[k]
    out["METEOR"], items["METEOR"] = Meteor().compute_score(gts, res)
    out["ROUGE-L"], items["ROUGE-L"] = Rouge().compute_score(gts, res)
    out["CIDEr"], items["CIDEr"] = Cider().compute_score(gts, res)
    return out, items


@pytest.fixture(scope="module")
def ours(coco_items):
    preds, refs = coco_items
    return compute_caption_metrics(preds, refs, metrics="coco,spice,sacrebleu,rouge")


@pytest.mark.parametrize("key", ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"])
def test_coco_metrics_match_pycocoevalcap(official, ours, key):
    corpus, items = official
    assert ours.corpus[key] == pytest.approx(corpus[key], abs=1e-4)
    assert [row[key] for row in ours.per_item] == pytest.approx(list(items[key]), abs=1e-4)


def test_scores_are_plausible_for_real_captions(ours):
    # Guards against a silently empty tokenization (every score 0) passing the equality test above.
    assert 0.5 < ours.corpus["BLEU-1"] < 1.0
    assert 0.1 < ours.corpus["BLEU-4"] < ours.corpus["BLEU-1"]
    assert 0.3 < ours.corpus["CIDEr"] < 5.0


def test_sacrebleu_matches_library(coco_items, ours):
    import sacrebleu

    preds, refs = coco_items
    streams = [list(s) for s in zip(*refs, strict=True)]  # 5 reference streams
    expected = sacrebleu.corpus_bleu(preds, streams).score / 100
    assert ours.corpus["sacreBLEU"] == pytest.approx(expected, abs=1e-9)
    assert "nrefs:5" in ours.settings["sacrebleu"]["signature"]


def test_rouge_matches_rouge_score_best_reference(coco_items, ours):
    from rouge_score import rouge_scorer

    preds, refs = coco_items
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2"], use_stemmer=False)
    for key, name in (("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2")):
        per_item = [max(scorer.score(r, p)[name].fmeasure for r in rs) for p, rs in zip(preds, refs, strict=True)]
        assert ours.corpus[key] == pytest.approx(sum(per_item) / len(per_item), abs=1e-9)


def test_spice_reported_unavailable_without_corenlp(ours):
    from vlgen.metrics.coco import spice_unavailable_reason

    reason = spice_unavailable_reason()
    if reason is None:
        pytest.skip("Stanford CoreNLP jars are installed: SPICE runs")
    assert ours.corpus["SPICE"] is None
    assert "CoreNLP" in ours.settings["unavailable"]["SPICE"]


def test_variable_reference_counts_and_line_breaks_keep_alignment():
    # A \u2028 inside a caption would make Java's tokenizer emit an extra line and shift every later item.
    preds = ["a dog\u2028runs on the grass", "a cat sits on a mat", "a red car"]
    refs = [["a dog runs on the grass"], ["a cat sits on a mat", "the cat is on the mat"], ["a red car parked"] * 3]
    s = compute_caption_metrics(preds, refs, metrics="coco")
    assert s.per_item[0]["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert s.per_item[1]["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
