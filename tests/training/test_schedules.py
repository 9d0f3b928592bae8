"""One meaning per learning-rate schedule name, in `train caption` and `train lora` (transformers' meaning)."""

from __future__ import annotations

import pytest
import torch

from vlgen.captioning.train_config import CaptionTrainConfig
from vlgen.captioning.trainer import build_scheduler as caption_scheduler
from vlgen.config import resolve_config
from vlgen.t2i.lora_config import LoraTrainConfig
from vlgen.training.schedules import build_scheduler, ignored_warmup


def _lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _caption(name: str, warmup: int, total: int = 12, steps_per_epoch: int = 3, restart_epochs: int = 1):
    cfg = CaptionTrainConfig(lr_scheduler=name, lr_warmup_steps=warmup, restart_epochs=restart_epochs)
    return _lrs(caption_scheduler(cfg, _optimizer(), total, steps_per_epoch), total)


def _lora(name: str, warmup: int, total: int = 12):
    cfg = LoraTrainConfig(lr_scheduler=name, lr_warmup_steps=warmup)
    sched = build_scheduler(cfg.lr_scheduler, _optimizer(), warmup_steps=warmup, total_steps=total)
    return _lrs(sched, total)


@pytest.mark.parametrize("name", ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts"])
def test_each_name_means_the_same_in_both_commands(name):
    # cosine_with_restarts: one period of 2 epochs x 4 steps = the 8 steps after the warm-up (--lr-num-cycles 1)
    assert _caption(name, warmup=4, steps_per_epoch=4, restart_epochs=2) == _lora(name, warmup=4)


def test_constant_has_no_warmup_and_constant_with_warmup_has():
    assert _caption("constant", warmup=4) == [1.0] * 12
    assert _caption("constant_with_warmup", warmup=4)[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert "constant_with_warmup" in ignored_warmup("constant", 4)
    assert ignored_warmup("constant", 0) is None and ignored_warmup("linear", 4) is None


def test_cosine_with_restarts_honours_warmup_and_restart_epochs():
    lrs = _caption("cosine_with_restarts", warmup=3, total=15, steps_per_epoch=3, restart_epochs=2)
    assert lrs[:3] == [0.0, 1 / 3, 2 / 3]
    assert lrs[3] == 1.0 and lrs[9] == 1.0  # a restart every 2 epochs = 6 steps after the warm-up
    assert lrs[4] < 1.0 and lrs[8] < lrs[4]
    # Without warm-up: CosineAnnealingWarmRestarts(T_0 = restart_epochs * steps_per_epoch), the schedule
    # `cosine_restarts` meant before.
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(_optimizer(), T_0=6)
    assert _caption("cosine_restarts", warmup=0, total=12, restart_epochs=2) == pytest.approx(_lrs(ref, 12), abs=1e-12)


@pytest.mark.parametrize("name", ["cosine_restarts", "cosine-with-restarts", "cosine_with_restarts"])
def test_caption_aliases_are_stored_with_diffusers_spelling(name):
    assert resolve_config(CaptionTrainConfig, None, {"lr_scheduler": name}).lr_scheduler == "cosine_with_restarts"
    cfg = resolve_config(CaptionTrainConfig, None, {"lr_scheduler": "constant-with-warmup"})
    assert cfg.lr_scheduler == "constant_with_warmup"


def test_shipped_caption_recipes_keep_their_warmup_meaning():
    for name in ("cnn-lstm-flickr8k-resnet50", "cnn-lstm-flickr8k-densenet201"):
        assert resolve_config(CaptionTrainConfig, name).lr_scheduler == "constant_with_warmup"
    assert resolve_config(CaptionTrainConfig, "blip-diffusiondb").lr_scheduler == "cosine_with_restarts"
