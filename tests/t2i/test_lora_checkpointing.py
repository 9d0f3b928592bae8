"""Gradient checkpointing in `vlgen train lora`: reentrant where safe, the same gradients as without it."""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from t2ihelpers import lora_config

from vlgen.t2i.lora_trainer import LoraTrainer, checkpoint_lora_block, step_generator


def _lora_grads(trainer: LoraTrainer) -> dict[str, torch.Tensor]:
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.loss([0, 1], step_generator(0, 0, 0)).backward()
    return {n: p.grad.clone() for n, p in trainer.trainable.named_parameters()}


def test_checkpointed_gradients_equal_plain_ones_and_reach_every_lora_weight(
    icons, tiny_sdxl_dir, tiny_sdxl_vae_dir, tmp_path, monkeypatch
):
    cfg = lora_config(icons, tmp_path / "out", tiny_sdxl_dir, tiny_sdxl_vae_dir, gradient_checkpointing=True)
    trainer = LoraTrainer(cfg)
    trainer.setup()
    unet = trainer.parts.unet
    torch.manual_seed(0)
    with torch.no_grad():  # lora_B starts at zero, which would leave every lora_A gradient zero
        for name, p in trainer.trainable.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.01)
    installed = {m._gradient_checkpointing_func for m in unet.modules() if getattr(m, "gradient_checkpointing", False)}
    assert installed == {checkpoint_lora_block}  # every checkpointing block of the UNet uses it

    calls: list[bool] = []
    real = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(
        torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(k["use_reentrant"]) or real(*a, **k)
    )
    checkpointed = _lora_grads(trainer)
    # Both paths ran: non-reentrant for blocks fed only by frozen layers, reentrant after the first LoRA.
    assert True in calls and False in calls
    unet.disable_gradient_checkpointing()
    calls.clear()
    plain = _lora_grads(trainer)
    assert not calls

    assert checkpointed.keys() == plain.keys() and len(plain) > 0
    for name, grad in plain.items():
        assert grad.abs().sum() > 0, name  # incl. the first transformer block, whose inputs need no grad
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-8, msg=name)
