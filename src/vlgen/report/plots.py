"""Plots for reports (matplotlib with the Agg backend: renders to PNG bytes, needs no display)."""

from __future__ import annotations

import io
from collections.abc import Sequence


def length_histogram_png(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, title: str = "Caption length"
) -> bytes:
    """PNG bytes of a word-count histogram: predictions vs all references (density, shared bins).

    Lengths are whitespace word counts of the raw text (what a reader sees), not PTB tokens. Without references
    (reference-free CLIPScore runs) only the predictions are drawn.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    pred_len = np.array([len(p.split()) for p in predictions])
    ref_len = np.array([len(r.split()) for refs in references for r in refs])
    hi = int(max(pred_len.max(initial=0), ref_len.max(initial=0))) + 1
    bins = np.arange(0, hi + 1) - 0.5 if hi <= 60 else 40  # one bin per word count while it stays readable
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    if ref_len.size:
        ax.hist(ref_len, bins=bins, density=True, alpha=0.55, color="#98a2b3", label=f"references (n={ref_len.size})")
        ax.axvline(ref_len.mean(), color="#667085", ls="--", lw=1)
    ax.hist(pred_len, bins=bins, density=True, alpha=0.65, color="#3056d3", label=f"predictions (n={pred_len.size})")
    ax.axvline(pred_len.mean(), color="#3056d3", ls="--", lw=1)
    ax.set_xlabel("words")
    ax.set_ylabel("fraction")
    refs = f" vs {ref_len.mean():.1f} (ref)" if ref_len.size else ""
    ax.set_title(f"{title}: mean {pred_len.mean():.1f} (pred){refs} words")
    ax.legend(frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
