"""Learning curves (train/validation loss and validation metrics against steps) as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vlgen.fileio import atomic_file


def plot_learning_curves(history: Sequence[dict], path: str | Path, title: str = "learning curves") -> Path:
    """`history` rows as the trainers write them: `step` plus `train_loss`, `val_loss` and metric columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    # validation rows: a val_loss, or metric columns only (a LoRA run's --validation-metrics on a training row)
    base = {"step", "epoch", "train_loss", "lr", "val_loss"}
    val = [h for h in history if "val_loss" in h or any(k not in base for k in h)]
    metric_keys = [k for k in dict.fromkeys(k for h in val for k in h) if k not in base]
    ncols = 2 if metric_keys else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", alpha=0.8)
    val_loss = [(h["step"], h["val_loss"]) for h in val if "val_loss" in h]
    if val_loss:
        ax.plot(*zip(*val_loss, strict=True), "o-", label="validation loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if metric_keys:
        ax2 = axes[0][1]
        for k in metric_keys:
            pts = [(h["step"], h[k]) for h in val if isinstance(h.get(k), (int, float))]
            if pts:
                ax2.plot(*zip(*pts, strict=True), "o-", label=k)
        ax2.set_xlabel("optimiser step")
        ax2.set_title("validation metrics")
        ax2.grid(alpha=0.3)
        ax2.legend()
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
