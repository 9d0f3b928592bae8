"""The demo's text -> image base: a small SDXL pipeline trained from scratch on the synthetic world.

Offline there are no pretrained weights, and a random UNet draws blobs whatever the prompt says. So the demo
ships a base trained beforehand by `vlgen demo --train-base OUT` (`train_demo_base`), committed as package
data in `vlgen/demo/base/` (DEMO_BASE) and loaded through `StableDiffusionXLPipeline.from_pretrained` like
any downloaded base. Its recipe (DemoBaseConfig, saved beside the weights as `train_base.json`):

- the real SDXL classes and config schema at toy size: the text encoders, tokenizers and scheduler of
  `vlgen tiny sdxl` (random, frozen), an AutoencoderKL with 3 levels (vae_scale_factor 4: 64 px <-> 16x16x4
  latents, so a 14 px triangle spans ~3.5 latent pixels instead of ~1.75 at SDXL's factor 8), and a
  UNet2DConditionModel (32, 64, 128 channels; cross-attention at 8x8 and 4x4; `text_time` additional
  conditioning as SDXL);
- the VAE is fitted as an autoencoder on the captioning set's training images (`fit_tiny_sdxl_vae`, colour
  augmented so that it can also decode the glossy style set, which it never sees);
- the UNet is trained fully (all weights) for 3000 steps on the cached latents of the training split with the
  v-prediction loss on a zero-terminal-SNR schedule (Lin et al. 2023: rescaled betas, trailing timesteps, the
  last step pure noise; the scheduler saved with the base says so, and every diffusers scheduler and `vlgen
  train lora` read it there), Min-SNR-5 capped (Hang et al. 2023). SDXL's own schedule leaves
  sqrt(alpha_bar) = 0.068 at t = 999: on 16x16 latents the colours of a 4x4-latent object are still readable
  in the noisy input, so an epsilon model learned to take colour from the noise and drew random colours from
  pure noise (0.42 of the prompts' colour/shape words recovered, against a floor of 0.35; 0.71 now);
- classifier-free guidance training (Ho & Salimans 2022): 10 % of the captions are dropped to the *zero*
  embedding, which is what SDXL's pipeline feeds as the negative prompt (`force_zeros_for_empty_prompt`), so
  `guidance_scale` works at inference;
- half of the prompt variants get a generic phrase *after* the caption ("..., a 3D icon", "..., a picture in
  the style of clay"; `affix`), half of its style words random letters (`random_style_words`; never the
  style trigger TOK): the tiny CLIP text encoders are causal, so a phrase before the caption would change
  every caption token's embedding (behind "a 3D icon in the style of TOK," the base recovered 0.39 where the
  plain caption gave 0.57), and the demo prompts the base with "{caption}, a 3D icon in the style of TOK";
- EMA of the UNet weights (decay 0.999) is what is saved; the UNet is stored in fp16 (loads as fp32).
Every draw comes from generators seeded by `seed`: on the same machine the same command writes the same
weights (CPU kernels are deterministic for a fixed thread count, `threads`).
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlgen.errors import DataError
from vlgen.fileio import atomic_directory

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel

DEMO_BASE = Path(__file__).parent / "base"  # the committed weights (package data)
TRAIN_INFO = "train_base.json"
LATENT_SIZE = 16  # 64 px / vae_scale_factor 4
RESOLUTION = 64
# Generic prefixes the base learns to read past ({w}: a non-trigger style word). Never TOK: the style LoRA
# teaches that one.
PREFIXES = (
    "a picture of",
    "an image of",
    "a drawing of",
    "a 3D icon of",
    "a 3D icon in the style of {w},",
    "a picture in the style of {w},",
)
PREFIX_WORDS = ("clay", "paper", "glass", "ink", "wood", "felt", "chalk", "pixel")


@dataclass
class DemoBaseConfig:
    data: str = ""  # the captioning set (metadata.jsonl with splits); the UNet and VAE see its train split
    out: str = ""
    seed: int = 0
    vae_steps: int = 1500
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_warmup_steps: int = 100
    adam_weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    snr_gamma: float = 5.0
    ema_decay: float = 0.999
    # Per-channel offset noise (Guttenberg 2023): the spatial mean of 16x16 noisy latents still carries the
    # picture's colours at high t, so without it the UNet learns to read colour from the noise instead of the
    # prompt, and sampling from pure noise mixes colours.
    noise_offset: float = 0.0
    caption_dropout: float = 0.1  # share of captions replaced by the zero (unconditional) embedding
    prefix_probability: float = 0.5
    # Share of the prefixes' style words {w} drawn as random letter strings (3-6 letters, never "tok") instead of
    # PREFIX_WORDS. The tiny tokenizer spells unknown words letter by letter and the text encoders are causal, so
    # an unseen style word (the demo prompts "... in the style of TOK, {caption}") shifts every caption token's
    # embedding; a base that saw only 8 style words draws colours and shapes at random behind TOK. Trained
    # behind random words, it reads past any word there, and TOK is left for the style LoRA to give a meaning.
    random_style_words: float = 0.5
    # Where the generic phrase goes: "prefix" ("a 3D icon of {caption}") or "suffix" ("{caption}, a 3D icon").
    # The text encoders are causal: behind a prefix every caption token's embedding changes, behind a suffix
    # none does (only the pooled embedding and the phrase's own tokens), so the caption reads the same with or
    # without the style phrase the demo's LoRA prompts add.
    affix: str = "suffix"
    prompt_variants: int = 4  # prompts encoded per image (plain or behind a prefix), one drawn per step
    threads: int = 2
    snapshot_every: int = 0  # > 0: also write the EMA pipeline every N steps to OUT-stepN (to inspect a long run)
    # A base written by an earlier run: train on from its (EMA) UNet and keep its fitted VAE (no VAE fit); its
    # train_base.json is kept under "previous". How the committed base got more steps than one sitting allowed.
    init_from: str = ""
    # > 0: the two text encoders train too, at this learning rate (0: frozen, their embeddings cached). Random
    # tiny encoders mix each word with its position; trained ones give the UNet's cross-attention words it can
    # bind colours and shapes to.
    text_encoder_lr: float = 0.0
    # Zero terminal SNR with v-prediction and trailing timesteps (Lin et al. 2023). SDXL's schedule keeps
    # sqrt(alpha_bar) = 0.068 at t = 999: averaged over a 4x4-latent object, the picture's colours are still
    # readable in the noisy input, so an epsilon model learns to take colour and layout from the noise (and,
    # sampling from pure noise, draws whatever the noise suggests, whatever the prompt says). With the last
    # step pure noise, layout and colour can only come from the prompt, and the v loss weighs those early,
    # high-noise steps ~1 in x0 terms instead of ~SNR (0.005-0.02). The scheduler config saved with the base
    # says so, and every diffusers scheduler and `vlgen train lora` read it from there.
    zero_terminal_snr: bool = True
    # A base written by an earlier run whose fitted VAE (and only that) to take instead of fitting one: the
    # fit is seeded, so this equals refitting with the same seed and vae_steps, minus its ~6 minutes.
    vae_from: str = ""


def demo_unet() -> UNet2DConditionModel:
    """16x16 latents; plain ResNets at full resolution, cross-attention at 8x8 and 4x4 (4.2 M parameters)."""
    from diffusers import UNet2DConditionModel

    from vlgen.testing.sdxl import TINY_POOLED_DIM, TINY_TEXT_HIDDEN, TINY_TIME_EMBED_DIM

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 8),
        transformer_layers_per_block=(1, 1, 1),
        use_linear_projection=True,
        cross_attention_dim=2 * TINY_TEXT_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=TINY_POOLED_DIM + 6 * TINY_TIME_EMBED_DIM,
    )


def demo_vae() -> AutoencoderKL:
    """3 levels (2 downsamplings): vae_scale_factor 4, 4 latent channels."""
    from diffusers import AutoencoderKL

    from vlgen.testing.sdxl import SDXL_SCALING_FACTOR

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=RESOLUTION,
        scaling_factor=SDXL_SCALING_FACTOR,  # replaced by 1 / latent std when fitted
        force_upcast=False,
    )


def demo_base_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """The untrained base: `vlgen tiny sdxl`'s text encoders, tokenizers and scheduler; the demo's UNet and
    VAE, seeded. Also the floor the demo reports (an untrained base of the same architecture)."""
    from diffusers import StableDiffusionXLPipeline

    from vlgen.testing._common import component_seed, seeded
    from vlgen.testing.sdxl import tiny_sdxl_pipeline

    tiny = tiny_sdxl_pipeline(seed)
    with seeded(component_seed(seed, 0)):
        unet = demo_unet().eval()
    with seeded(component_seed(seed, 1)):
        vae = demo_vae().eval()
    parts = {k: getattr(tiny, k) for k in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")}
    pipe = StableDiffusionXLPipeline(
        vae=vae, unet=unet, **parts, force_zeros_for_empty_prompt=True, add_watermarker=False
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _style_word(rng: random.Random, random_share: float) -> str:
    """A prefix's style word: one of PREFIX_WORDS, or with probability `random_share` 3-6 random letters."""
    if random_share > 0 and rng.random() < random_share:  # no draw at 0: earlier bases' prompts stay as they were
        while (w := "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 6)))) == "tok":
            pass  # TOK is the style LoRA's trigger: the base never sees it
        return w
    return rng.choice(PREFIX_WORDS)


def _as_suffix(prefix: str) -> str:
    """ "a 3D icon of" -> "a 3D icon"; "a picture in the style of clay," -> "a picture in the style of clay"."""
    phrase = prefix.rstrip(",")
    return phrase[: -len(" of")] if phrase.endswith(" of") else phrase


def training_prompts(
    caption: str,
    rng: random.Random,
    n: int,
    prefix_probability: float,
    random_style_words: float = 0.0,
    affix: str = "prefix",
) -> list[str]:
    """`n` prompts for one caption: the caption itself first, then each with a generic phrase (PREFIXES) before
    it (`affix="prefix"`) or after it (`"suffix"`, as `_as_suffix` writes the phrase) with probability
    `prefix_probability` (drawn from `rng`; style words as `_style_word`)."""
    out = [caption]
    for _ in range(n - 1):
        if rng.random() < prefix_probability:
            prefix = rng.choice(PREFIXES).format(w=_style_word(rng, random_style_words))
            out.append(f"{prefix} {caption}" if affix == "prefix" else f"{caption}, {_as_suffix(prefix)}")
        else:
            out.append(caption)
    return out


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:  # linear warm-up, cosine decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


def train_demo_base(cfg: DemoBaseConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit the VAE, then train the UNet; write the pipeline to `cfg.out` (atomically). Returns the summary."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    from vlgen.data import load_records
    from vlgen.t2i.conditioning import encode_prompt, tokenize
    from vlgen.testing._common import component_seed
    from vlgen.testing.sdxl import _load_pixels, _to_unit, fit_tiny_sdxl_vae

    data, out = Path(cfg.data), Path(cfg.out)
    if not (data / "metadata.jsonl").is_file():
        raise DataError("no metadata.jsonl: --train-base needs the captioning set (vlgen data synth)", path=str(data))
    records = load_records(data, split="train")
    if cfg.affix not in ("prefix", "suffix"):
        raise DataError(f"affix must be 'prefix' or 'suffix', got {cfg.affix!r}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise DataError(f"steps and batch_size must be at least 1, got {cfg.steps} and {cfg.batch_size}")
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    previous = None
    if cfg.init_from:
        from diffusers import StableDiffusionXLPipeline

        init = Path(cfg.init_from)
        if not (init / TRAIN_INFO).is_file():
            raise DataError(f"no {TRAIN_INFO}: init_from expects a base written by --train-base", path=str(init))
        pipe = StableDiffusionXLPipeline.from_pretrained(init)  # fp32 (the fp16 UNet is upcast)
        pipe.set_progress_bar_config(disable=True)
        previous = json.loads((init / TRAIN_INFO).read_text())
        vae_fit = {**previous["vae_fit"], "from": str(init)}
        log(f"continuing from {init} (its VAE kept)")
    elif cfg.vae_from:
        from diffusers import AutoencoderKL

        pipe = demo_base_pipeline(cfg.seed)
        source = Path(cfg.vae_from)
        if not (source / TRAIN_INFO).is_file():
            raise DataError(f"no {TRAIN_INFO}: vae_from expects a base written by --train-base", path=str(source))
        pipe.vae = AutoencoderKL.from_pretrained(source / "vae").eval()
        vae_fit = {**json.loads((source / TRAIN_INFO).read_text())["vae_fit"], "from": str(source)}
        log(f"VAE taken from {source}")
    else:
        pipe = demo_base_pipeline(cfg.seed)
        log(f"fitting the VAE on {data} (train split, {cfg.vae_steps} steps)")
        vae_fit = fit_tiny_sdxl_vae(pipe.vae, data, steps=cfg.vae_steps, seed=component_seed(cfg.seed, 1))
    if cfg.zero_terminal_snr:
        from diffusers import EulerDiscreteScheduler

        pipe.scheduler = EulerDiscreteScheduler.from_config(
            pipe.scheduler.config, rescale_betas_zero_snr=True, prediction_type="v_prediction",
            timestep_spacing="trailing",
        )  # fmt: skip
    t_vae = time.perf_counter() - t0
    log(f"VAE: reconstruction MSE {vae_fit['reconstruction_mse_after']:.4f}, scaling {vae_fit['scaling_factor']:.4g}")

    # Caches: latents (N, 4, 16, 16) = posterior mode x scaling_factor; prompt embeddings per (image, variant).
    vae, scaling = pipe.vae, float(pipe.vae.config.scaling_factor)
    pixels = _load_pixels([r.path for r in records], RESOLUTION)  # (N, 3, 64, 64) uint8
    with torch.no_grad():
        latents = torch.cat(
            [vae.encode(_to_unit(pixels[i : i + 64])).latent_dist.mode() * scaling for i in range(0, len(pixels), 64)]
        )
    del pixels
    rng = random.Random(f"vlgen-demo-base:{cfg.seed}")
    k = cfg.prompt_variants
    prompts = [
        p
        for r in records
        for p in training_prompts(r.captions[0], rng, k, cfg.prefix_probability, cfg.random_style_words, cfg.affix)
    ]
    encoders = [pipe.text_encoder, pipe.text_encoder_2]
    train_te = cfg.text_encoder_lr > 0
    token_ids = tokenize([pipe.tokenizer, pipe.tokenizer_2], prompts)  # 2 x (N * k, 77)
    if not train_te:
        embeds, pooled = [], []
        with torch.no_grad():
            for i in range(0, len(prompts), 256):
                e, p = encode_prompt(encoders, [ids[i : i + 256] for ids in token_ids])
                embeds.append(e)
                pooled.append(p)
        prompt_embeds = torch.cat(embeds)  # (N * k, 77, 64)
        pooled_embeds = torch.cat(pooled)  # (N * k, 32)
    log(f"cached {len(latents)} latents and {len(prompts)} prompt embeddings ({time.perf_counter() - t0:.0f} s)")

    unet = pipe.unet
    unet.train().requires_grad_(True)
    # The EMA covers everything that trains (UNet, then the text encoders when they train).
    trained = [unet, *(encoders if train_te else [])]
    params = [q for m in trained for q in m.parameters()]
    for te in encoders:
        te.train(train_te).requires_grad_(train_te)
    ema = [q.detach().clone() for q in params]
    sched = DDPMScheduler.from_config(pipe.scheduler.config)  # the base's betas and prediction type
    v_pred = sched.config.prediction_type == "v_prediction"
    groups = [{"params": list(unet.parameters()), "lr": cfg.learning_rate}]
    if train_te:
        groups.append({"params": [q for te in encoders for q in te.parameters()], "lr": cfg.text_encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.adam_weight_decay, foreach=True)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.lr_warmup_steps, cfg.steps))
    # A continuation draws other batches than the run it continues (index 5, not 4).
    g = torch.Generator().manual_seed(component_seed(cfg.seed, 5 if cfg.init_from else 4))
    time_ids = torch.tensor([[RESOLUTION, RESOLUTION, 0, 0, RESOLUTION, RESOLUTION]], dtype=torch.float32)
    b, history, running = cfg.batch_size, [], []
    t_loop = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(latents), (b,), generator=g)
        variant = torch.randint(0, k, (b,), generator=g)
        x0 = latents[idx]  # (b, 4, 16, 16)
        noise = torch.randn(x0.shape, generator=g)
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * torch.randn((b, x0.shape[1], 1, 1), generator=g)  # (b, 4, 1, 1)
        t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=g)
        keep = (torch.rand(b, generator=g) >= cfg.caption_dropout).float()  # (b,) 0 = unconditional
        if train_te:
            e, p = encode_prompt(encoders, [ids[idx * k + variant] for ids in token_ids])  # (b, 77, 64), (b, 32)
        else:
            e, p = prompt_embeds[idx * k + variant], pooled_embeds[idx * k + variant]
        e, p = e * keep[:, None, None], p * keep[:, None]
        pred = unet(sched.add_noise(x0, noise, t), t, e,
                    added_cond_kwargs={"text_embeds": p, "time_ids": time_ids.expand(b, 6)}).sample  # fmt: skip
        snr = compute_snr(sched, t)  # (b,) alpha_bar / (1 - alpha_bar); 0 at t = 999 with zero terminal SNR
        if v_pred:
            # In x0 terms the v loss weighs step t by snr + 1; capped at gamma as Min-SNR does (the "+1" keeps
            # the pure-noise step, snr = 0, in the loss; min(snr, gamma) / (snr + 1) would drop it).
            target = sched.get_velocity(x0, noise, t)
            weight = torch.clamp(snr + 1, max=cfg.snr_gamma) / (snr + 1)
        else:
            target = noise
            weight = torch.clamp(snr, max=cfg.snr_gamma) / snr  # Min-SNR-gamma for epsilon prediction
        loss = (F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
        opt.step()
        lr_sched.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # warm-up of the EMA (as diffusers' EMAModel)
            torch._foreach_lerp_(ema, [q.detach() for q in params], 1 - decay)
        running.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == cfg.steps:
            row = {"step": step + 1, "loss": sum(running) / len(running), "lr": lr_sched.get_last_lr()[0]}
            history.append(row)
            running = []
            rate = (time.perf_counter() - t_loop) / (step + 1)
            log(f"step {step + 1}/{cfg.steps} loss {row['loss']:.4f} ({rate:.2f} s/step)")
        if cfg.snapshot_every and (step + 1) % cfg.snapshot_every == 0 and step + 1 < cfg.steps:
            _snapshot(pipe, params, ema, out.with_name(f"{out.name}-step{step + 1}"), {"step": step + 1})
    t_unet = time.perf_counter() - t_loop
    with torch.no_grad():
        for q, e_ in zip(params, ema, strict=True):
            q.copy_(e_)
    for m in (unet, *encoders):
        m.eval().requires_grad_(False)

    summary = {
        "config": asdict(cfg),
        "vae_fit": vae_fit,
        "train_images": len(records),
        "unet_parameters": sum(q.numel() for q in unet.parameters()),
        "history": history,
        "final_loss": history[-1]["loss"] if history else None,
        "seconds": {"vae": round(t_vae, 1), "unet": round(t_unet, 1), "total": round(time.perf_counter() - t0, 1)},
        "retrain": f"vlgen demo --train-base OUT --seed {cfg.seed} (see vlgen.demo.base_model)",
    }
    if previous is not None:
        summary["previous"] = previous
    save_demo_base(pipe, out, summary)
    return summary


def _snapshot(pipe: StableDiffusionXLPipeline, params: list[torch.Tensor], ema: list[torch.Tensor], out: Path,
              info: dict[str, Any]) -> None:  # fmt: skip
    """Write the pipeline with the EMA weights swapped in, then swap the training weights back."""
    import torch

    with torch.no_grad():
        live = [q.detach().clone() for q in params]
        for q, e in zip(params, ema, strict=True):
            q.copy_(e)
        save_demo_base(pipe, out, info)
        for q, w in zip(params, live, strict=True):
            q.copy_(w)


def save_demo_base(pipe: StableDiffusionXLPipeline, out: Path, summary: dict[str, Any]) -> Path:
    """`save_pretrained` into a temp dir beside `out`, UNet in fp16 (halves the committed size; loads as fp32
    by default), then rename into place."""
    import torch
    from safetensors.torch import save_file

    out = Path(out).absolute()
    with atomic_directory(out) as tmp:
        pipe.save_pretrained(tmp)
        # The UNet's weights again in fp16 (same keys): a state-dict cast, so the live fp32 model is untouched.
        fp16 = {k: v.to(torch.float16).contiguous() for k, v in pipe.unet.state_dict().items()}
        save_file(fp16, tmp / "unet" / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
        (tmp / TRAIN_INFO).write_text(json.dumps(summary, indent=2) + "\n")
    return out


def build_untrained_base(base: str | os.PathLike, out: str | os.PathLike, seed: int = 0) -> Path:
    """`base` with its UNet re-initialised (seeded, same config): the floor the demo reports. The VAE, text
    encoders and scheduler are the base's own, so only what the UNet learned is missing."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    from vlgen.testing._common import component_seed, seeded

    pipe = StableDiffusionXLPipeline.from_pretrained(base)
    with seeded(component_seed(seed, 0)):
        pipe.unet = UNet2DConditionModel.from_config(pipe.unet.config).eval()
    info = {"untrained": True, "from": str(base), "seed": seed, "note": "UNet re-initialised; the floor"}
    return save_demo_base(pipe, Path(out), info)


def train_demo_base_from_scratch(out: str | os.PathLike, seed: int = 0, log: Callable[[str], None] = print,
                                 **overrides: Any) -> dict[str, Any]:  # fmt: skip
    """`vlgen demo --train-base OUT`: render the demo's default captioning set (DemoConfig: 3000 images, seeded,
    80/10/10 splits) into a temporary folder and train the base on its train split."""
    from vlgen.data.splits import parse_ratios
    from vlgen.data.synth import synth_dataset
    from vlgen.demo import DemoConfig

    demo = DemoConfig(seed=seed)
    with tempfile.TemporaryDirectory(prefix="vlgen-demo-base-") as tmp:
        data = Path(tmp) / "captions"
        synth_dataset(data, demo.n_images, seed=seed, split_ratios=parse_ratios(demo.split_ratios), progress=False)
        return train_demo_base(DemoBaseConfig(data=str(data), out=str(out), seed=seed, **overrides), log=log)
