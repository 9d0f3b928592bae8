"""Fixtures for the text-to-image tests: a small style set and one LoRA trained on tiny SDXL (CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from t2ihelpers import fixed_set_loss, lora_config

from vlgen.data.synth import synth_dataset


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """Tiny models on 2 shared cores: OpenMP's 2-thread barriers cost more than they gain (and stall
    badly when the cores are busy), so these tests run single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def icons(tmp_path_factory) -> Path:
    """6 glossy synthetic 'icons' of 64 x 64 with captions in metadata.jsonl (column `text`)."""
    out = tmp_path_factory.mktemp("icons") / "data"
    synth_dataset(out, n=6, seed=0, style="glossy", image_size=64, progress=False)
    return out


@pytest.fixture(scope="session")
def trained(icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path_factory):
    """One LoRA run (30 steps, kohya export too): (trainer, out_dir, loss_before, loss_after)."""
    from vlgen.t2i.lora_trainer import LoraTrainer

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lora") / "run"
    cfg = lora_config(
        icons, out, tiny_sdxl_dir, tiny_sdxl_vae_dir, max_train_steps=30, export_format="kohya", learning_rate=2e-2
    )
    trainer = LoraTrainer(cfg)
    trainer.setup()
    before = fixed_set_loss(trainer)
    trainer.train()
    after = fixed_set_loss(trainer)
    return trainer, out, before, after
