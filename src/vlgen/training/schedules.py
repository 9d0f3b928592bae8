"""Learning-rate schedules: transformers' `get_scheduler`, one meaning per name in every command.

The names mean what they mean in transformers and diffusers: `constant` has no warm-up (`--lr-warmup-steps`
is ignored, as there), `constant_with_warmup` has one; every other schedule warms up linearly for
`--lr-warmup-steps` steps first. `cosine_with_restarts` is the hard-restart cosine after the warm-up,
`num_cycles` periods over the remaining steps (a fractional number gives a fixed period; `train caption`'s
`--restart-epochs` is turned into one, see `restarts_for_period`).
"""

from __future__ import annotations

SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


def restarts_for_period(period_steps: int, total_steps: int, warmup_steps: int) -> float:
    """`num_cycles` of cosine_with_restarts that restarts every `period_steps` optimiser steps after the warm-up
    (CosineAnnealingWarmRestarts' T_0; equal to it step for step when there is no warm-up)."""
    return max(total_steps - warmup_steps, 1) / max(period_steps, 1)


def build_scheduler(
    name: str,
    optimizer,
    *,
    warmup_steps: int,
    total_steps: int,
    num_cycles: float = 1,
    power: float = 1.0,
):
    """The LambdaLR of schedule `name`, stepped once per optimiser step."""
    from transformers import get_scheduler

    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    specific: dict = {}
    if name == "cosine_with_restarts":
        specific = {"num_cycles": num_cycles}
    elif name == "polynomial":
        specific = {"power": power}
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=max(total_steps, 1),
        scheduler_specific_kwargs=specific,
    )


def ignored_warmup(name: str, warmup_steps: int) -> str | None:
    """A one-line note when `--lr-warmup-steps` does nothing (`constant` has no warm-up), else None."""
    if name == "constant" and warmup_steps > 0:
        return (
            f"--lr-scheduler constant has no warm-up: --lr-warmup-steps {warmup_steps} is ignored "
            "(use constant_with_warmup to warm up)"
        )
    return None


__all__ = ["SCHEDULES", "build_scheduler", "ignored_warmup", "restarts_for_period"]
