"""The two training objectives of text -> image bases: DDPM noise (SD 1.5, SDXL) and flow matching (Flux).

Every random draw comes from the micro-batch's generator `g` (lora_trainer.step_generator), in a fixed
order, so a resumed run draws what the uninterrupted run drew.

DDPM (Ho et al. 2020): x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps with t uniform in [0, T); the target is eps,
or v = sqrt(a_t) eps - sqrt(1 - a_t) x_0 for v-prediction bases; optional Min-SNR-gamma weights.
Flow matching (rectified flow, Esser et al. 2024 "Scaling Rectified Flow Transformers", as diffusers'
train_dreambooth_lora_flux.py): x_s = (1 - s) x_0 + s eps with s a sigma of the base's
FlowMatchEulerDiscreteScheduler picked by `--weighting-scheme`'s density (uniform for "none"), the target
eps - x_0, and the scheme's loss weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from vlgen.t2i.families.base import Prediction

if TYPE_CHECKING:
    from vlgen.t2i.lora_config import LoraTrainConfig


def min_snr_weights(noise_scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B,) per-sample loss weights of Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting Strategy", eq. 9): min(SNR(t), gamma) / SNR(t) for epsilon prediction; for
    v-prediction the target already carries a factor SNR + 1, hence / (SNR(t) + 1)."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, timesteps)  # alpha_bar / (1 - alpha_bar)
    clipped = torch.clamp(snr, max=gamma)
    if noise_scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def ddpm_noisy(latents: torch.Tensor, g: torch.Generator, cfg: LoraTrainConfig, sched: Any) -> Prediction:
    """latents (n, C, h, w) -> noisy latents at uniform integer timesteps; draws: noise, offset, timesteps."""
    dev, n = latents.device, latents.shape[0]
    noise = torch.randn(latents.shape, generator=g).to(dev, latents.dtype)
    if cfg.noise_offset:  # per-channel offset (Guttenberg 2023): lets the model learn very dark/bright images
        offset = torch.randn((n, latents.shape[1], 1, 1), generator=g).to(dev, noise.dtype)  # (n, C, 1, 1)
        noise = noise + cfg.noise_offset * offset
    timesteps = torch.randint(0, sched.config.num_train_timesteps, (n,), generator=g).to(dev)
    noisy = sched.add_noise(latents, noise, timesteps)
    target = sched.get_velocity(latents, noise, timesteps) if sched.config.prediction_type == "v_prediction" else noise
    return Prediction(noisy=noisy, timesteps=timesteps, target=target, weights=None)


def ddpm_weights(pred: Prediction, n: int, cfg: LoraTrainConfig, sched: Any) -> torch.Tensor | None:
    """(n,) Min-SNR weights of the first n samples (the instance half with prior preservation), or None."""
    if cfg.snr_gamma is None:
        return None
    return min_snr_weights(sched, pred.timesteps[:n], cfg.snr_gamma)


def flow_matching_noisy(latents: torch.Tensor, g: torch.Generator, cfg: LoraTrainConfig, sched: Any) -> Prediction:
    """latents (n, C, h, w) -> x_s = (1 - s) x_0 + s eps; draws: noise, then u (the timestep density)."""
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

    dev, n = latents.device, latents.shape[0]
    noise = torch.randn(latents.shape, generator=g).to(dev, latents.dtype)
    u = compute_density_for_timestep_sampling(
        weighting_scheme=cfg.weighting_scheme, batch_size=n, logit_mean=cfg.logit_mean, logit_std=cfg.logit_std,
        mode_scale=cfg.mode_scale, generator=g,
    )  # fmt: skip  # (n,) in [0, 1)
    indices = (u * sched.config.num_train_timesteps).long().clamp(max=len(sched.timesteps) - 1)
    # The scheduler's training grid: timesteps[i] = sigmas[i] * 1000 (shifted for bases without dynamic
    # shifting, e.g. schnell's shift 1.0 is the identity); the script looks the sigma up by index the same way.
    sigmas = sched.sigmas[indices].to(dev, torch.float32)  # (n,)
    timesteps = sched.timesteps[indices].to(dev)  # (n,) in [1, 1000]
    s = sigmas.view(n, 1, 1, 1).to(latents.dtype)
    noisy = (1.0 - s) * latents + s * noise
    weights = compute_loss_weighting_for_sd3(weighting_scheme=cfg.weighting_scheme, sigmas=sigmas)  # (n,)
    return Prediction(
        noisy=noisy, timesteps=timesteps, target=noise - latents,
        weights=None if cfg.weighting_scheme == "none" else weights, extra={"sigmas": sigmas},
    )  # fmt: skip
