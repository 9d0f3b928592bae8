"""Helpers shared by the t2i tests (imported as `from t2ihelpers import ...`)."""

from __future__ import annotations

from pathlib import Path

import torch

TRIGGER = "a 3D icon in the style of TOK"


def lora_config(data: Path, out: Path, base: Path, vae: Path, **kw):
    from vlgen.t2i.lora_config import LoraTrainConfig

    settings = dict(
        pretrained_model_name_or_path=str(base),
        pretrained_vae_model_name_or_path=str(vae),
        instance_data_dir=str(data),
        output_dir=str(out),
        instance_prompt=TRIGGER,
        resolution=64,
        train_batch_size=2,
        learning_rate=5e-3,
        snr_gamma=5.0,
        num_inference_steps=2,
        num_validation_images=2,
        checkpointing_steps=1000,
    )
    settings.update(kw)
    return LoraTrainConfig(**settings)


def fixed_set_loss(trainer, n_draws: int = 2) -> float:
    """Mean loss over every training image with fixed noise/timesteps (independent of the training draws)."""
    from vlgen.t2i.lora_trainer import step_generator

    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(trainer.instances)):
            for d in range(n_draws):
                total += trainer.loss([i], step_generator(12345, d, i)).item()
                count += 1
    return total / count
