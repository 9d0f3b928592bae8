"""Tiny SDXL: a `StableDiffusionXLPipeline` directory with every component of the real one
(stabilityai/stable-diffusion-xl-base-1.0) at toy width, plus a standalone tiny VAE that plays
madebyollin/sdxl-vae-fp16-fix (passed to the pipeline as `vae=`).

What is kept from SDXL, because the code under test depends on it:
- UNet2DConditionModel with `addition_embed_type="text_time"`: the pooled text embedding of
  text_encoder_2 (32 here, 1280 real) is concatenated with 6 time ids x `addition_time_embed_dim`
  (8 here, 256 real) -> `projection_class_embeddings_input_dim` = 32 + 48 = 80 (real 1280 + 1536 = 2816);
- `cross_attention_dim` = hidden of text_encoder + hidden of text_encoder_2 (32 + 32 = 64; real 768 + 1280);
- DownBlock2D then cross-attention blocks, linear projections, more transformer layers deeper down;
- an AutoencoderKL with 4 levels, so `vae_scale_factor` is 8 as in SDXL (64 px image <-> 8x8 latents), 4 latent
  channels, `scaling_factor` 0.13025;
- EulerDiscreteScheduler configured as SDXL base (scaled_linear 0.00085-0.012, steps_offset 1, leading);
- two CLIP tokenizers (model_max_length 77); `tokenizer_2` pads with "!" like OpenCLIP bigG's.
The UNet's `sample_size` is 8 latents, so the pipeline's default output is 64x64.

A random VAE decodes any latent to coloured noise, so whatever a UNet learns is invisible in the images.
`build_tiny_sdxl(out, fit_vae=DIR)` (`vlgen tiny sdxl OUT --fit-vae DIR`) therefore can fit the pipeline's
AutoencoderKL as an autoencoder on a folder of images first (`fit_tiny_sdxl_vae`: MSE reconstruction + a
small KL term, seeded) and set its `scaling_factor` to 1 / std of the latents over those images, the way
Rombach et al. chose 0.18215 for Stable Diffusion. The config schema is unchanged; only the VAE weights
and that one value differ from the random build.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlgen.errors import DataError
from vlgen.fileio import write_json
from vlgen.testing._common import component_seed, seeded, tiny_sd_unet, tiny_vae, write_model_dir
from vlgen.testing.clip import clip_text_kwargs, clip_tokenizer

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

TINY_TEXT_HIDDEN = 32  # each text encoder
TINY_POOLED_DIM = 32  # text_encoder_2's projection_dim (SDXL: 1280)
TINY_TIME_EMBED_DIM = 8  # SDXL: 256
SDXL_SCALING_FACTOR = 0.13025
VAE_FIT_STEPS = 1500  # `--vae-steps` default: flat shapes on a plain background reconstruct recognisably
VAE_FIT_FILE = "vae_fit.json"  # written next to model_index.json when the VAE was fitted


def tiny_sdxl_unet() -> UNet2DConditionModel:
    return tiny_sd_unet(
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        cross_attention_dim=2 * TINY_TEXT_HIDDEN,  # prompt_embeds = concat(te1 penultimate, te2 penultimate)
        addition_embed_type="text_time",
        addition_time_embed_dim=TINY_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=TINY_POOLED_DIM + 6 * TINY_TIME_EMBED_DIM,  # 32 + 48 = 80
    )


def tiny_sdxl_vae(force_upcast: bool = True) -> AutoencoderKL:
    """sdxl-base's VAE or, with force_upcast=False, sdxl-vae-fp16-fix's."""
    # sdxl-base: True (its fp16 activations overflow); the fp16-fix VAE: False
    return tiny_vae(scaling_factor=SDXL_SCALING_FACTOR, force_upcast=force_upcast)


def sdxl_scheduler() -> EulerDiscreteScheduler:
    """stable-diffusion-xl-base-1.0's scheduler_config.json (fields EulerDiscreteScheduler reads)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        interpolation_type="linear",
        use_karras_sigmas=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


def tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """The in-memory pipeline that `build_tiny_sdxl` saves (components seeded one by one)."""
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer()  # pads with <|endoftext|> (CLIP ViT-L)
    tokenizer_2 = clip_tokenizer(pad_token="!")  # pads with "!" = id 0 (OpenCLIP bigG)
    text_common = dict(hidden_size=TINY_TEXT_HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    with seeded(component_seed(seed, 0)):
        unet = tiny_sdxl_unet()
    with seeded(component_seed(seed, 1)):
        vae = tiny_sdxl_vae()
    with seeded(component_seed(seed, 2)):
        # CLIP ViT-L/14's text tower: quick_gelu; SDXL uses its penultimate hidden states only.
        te1_config = CLIPTextConfig(
            hidden_act="quick_gelu", projection_dim=32, **text_common, **clip_text_kwargs(tokenizer)
        )
        text_encoder = CLIPTextModel(te1_config)
    with seeded(component_seed(seed, 3)):
        # OpenCLIP bigG's text tower: gelu, with the projection whose output is SDXL's pooled embedding.
        te2_config = CLIPTextConfig(
            hidden_act="gelu", projection_dim=TINY_POOLED_DIM, **text_common, **clip_text_kwargs(tokenizer_2)
        )
        text_encoder_2 = CLIPTextModelWithProjection(te2_config)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=sdxl_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval()  # as `from_pretrained` returns them (SDPA takes another kernel in train mode)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def vae_image_paths(data_dir: str | os.PathLike) -> list[Path]:
    """The images to fit a VAE on: a dataset's `train` split when its metadata.jsonl has one (else every row),
    or every image file under a plain folder (sorted; hidden entries skipped). DataError if there are none."""
    from vlgen.data import IMAGE_EXTENSIONS, METADATA_NAME, load_records

    root = Path(data_dir).expanduser()
    if not root.is_dir():
        what = "not a directory" if root.exists() else "directory not found"
        raise DataError(f"{what}; --fit-vae expects a folder of images", path=str(root))
    if (root / METADATA_NAME).is_file():
        records = load_records(root)
        paths = [r.path for r in records if r.split == "train"] or [r.path for r in records]
    else:
        paths = sorted(
            p
            for p in root.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    if not paths:
        exts = ", ".join(IMAGE_EXTENSIONS)
        raise DataError(f"no images to fit the VAE on (looked for {exts} files or a metadata.jsonl)", path=str(root))
    return paths


def _load_pixels(paths: list[Path], size: int) -> torch.Tensor:
    """Images through the safe loader, resized (shorter side) and centre-cropped to size x size: (n, 3, s, s) uint8."""
    import numpy as np
    import torch
    from PIL import Image

    from vlgen.data import load_image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        im = load_image(path)
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        out[i] = np.asarray(im.crop((left, top, left + size, top + size)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0  # uint8 -> [-1, 1], what diffusers VAEs take


def colour_jitter(x: torch.Tensor, g: torch.Generator, p: float = 0.75) -> torch.Tensor:
    """Random colours for a batch in [-1, 1] (n, 3, h, w), each draw from `g`: with probability `p` an image
    gets a random channel permutation, a saturation change (blend with its grey, factor 0.3-1.5), a per-channel
    gain (0.6-1.2) and offset (-0.4-0.4) and a linear brightness ramp (+-0.3 at the edges, random direction),
    then clamps to [-1, 1]. A VAE fitted on a few flat palettes then
    reconstructs colours it never saw (a pastel background, a yellow shape) instead of snapping them to the
    nearest training colour; the shapes and edges are untouched."""
    import torch

    n = x.shape[0]
    perm = torch.stack([torch.randperm(3, generator=g) for _ in range(n)])  # (n, 3)
    sat = 0.3 + 1.2 * torch.rand(n, 1, 1, 1, generator=g)
    gain = 0.6 + 0.6 * torch.rand(n, 3, 1, 1, generator=g)
    offset = 0.8 * torch.rand(n, 3, 1, 1, generator=g) - 0.4
    angle = 2 * math.pi * torch.rand(n, 1, 1, 1, generator=g)
    ramp = 0.6 * torch.rand(n, 1, 1, 1, generator=g) - 0.3  # a linear brightness gradient across the crop
    apply = (torch.rand(n, generator=g) < p)[:, None, None, None]
    h, w = x.shape[-2:]
    v = torch.linspace(-1, 1, h)[:, None]  # (h, 1)
    u = torch.linspace(-1, 1, w)[None, :]  # (1, w)
    shade = ramp * (torch.cos(angle) * u + torch.sin(angle) * v)  # (n, 1, h, w)
    y = torch.gather(x, 1, perm[:, :, None, None].expand_as(x))
    grey = y.mean(1, keepdim=True)
    y = ((grey + sat * (y - grey)) * gain + offset + shade).clamp(-1.0, 1.0)
    return torch.where(apply, y, x)


def _reconstruction_mse(vae: AutoencoderKL, pixels: torch.Tensor, batch: int = 32) -> float:
    """Mean squared error of decode(posterior mean) against the input, in [-1, 1] units."""
    import torch

    total = 0.0
    with torch.no_grad():
        for i in range(0, len(pixels), batch):
            x = _to_unit(pixels[i : i + batch])
            rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
            total += float(((rec - x) ** 2).sum())
    return total / pixels[0].numel() / len(pixels)


def fit_tiny_sdxl_vae(
    vae: AutoencoderKL,
    data_dir: str | os.PathLike,
    steps: int = VAE_FIT_STEPS,
    seed: int = 0,
    batch_size: int = 8,
    learning_rate: float = 3e-3,
    kl_weight: float = 1e-6,
    max_images: int = 2048,
    colour_augment: bool = True,
) -> dict[str, Any]:
    """Fit `vae` (in place) as an autoencoder on the images of `data_dir`; returns a summary of the fit.

    Loss: MSE between the input and the decoded posterior sample, + `kl_weight` x KL(posterior || N(0, I)),
    AdamW with a 20-step warm-up and cosine decay to 10 %. Every draw (images, crops, flips, posterior noise)
    comes from one seeded generator, so the same seed and data give identical weights on CPU. Training
    batches are random `sample_size / 2` crops (horizontally flipped half the time): the VAE is
    convolutional, so quarter-size crops teach it the same pixels <-> latents mapping at a quarter of the cost.
    With `colour_augment` (default) 3 in 4 crops get random colours (`colour_jitter`: channel permutation,
    saturation, per-channel gain and offset, brightness ramp), so the VAE is a generic autoencoder rather than
    one that knows only the palette of `data_dir`: fitted on the demo's flat-coloured captioning set, it
    reconstructs the glossy style set it never sees better (measured, 24 style images, MSE in [-1, 1] units:
    1500 steps without it 0.146, 1000 steps with it 0.084; on its own held-out images 0.014 vs 0.052).
    The log-variance head starts at -6 (posterior std ~0.05) instead of ~0: with unit posterior noise the
    decoder would first have to learn to ignore it, which wastes most of a short fit.

    Afterwards `scaling_factor` is set to 1 / std of the latents (posterior samples) of up to 512 of the
    images at full size, so `latents * scaling_factor` has unit variance as diffusion training expects.
    Images go through `vlgen.data.load_image`; a bad file raises ImageLoadError naming it.
    """
    import torch

    from vlgen.progress import make_progress

    if steps < 1:
        raise DataError(f"VAE fitting needs at least 1 step, got {steps}")
    paths = vae_image_paths(data_dir)
    if len(paths) > max_images:  # evenly spaced, so the subset does not depend on the file order's start
        paths = [paths[i * len(paths) // max_images] for i in range(max_images)]
    size = int(vae.config.sample_size)
    crop = max(8, size // 2)
    pixels = _load_pixels(paths, size)
    g = torch.Generator().manual_seed(seed)
    held_out = pixels[torch.randperm(len(pixels), generator=g)[: min(64, len(pixels))]]
    vae.eval()
    mse_before = _reconstruction_mse(vae, held_out)

    with seeded(seed):
        with torch.no_grad():
            latent_channels = int(vae.config.latent_channels)
            head = vae.quant_conv if vae.quant_conv is not None else vae.encoder.conv_out
            head.bias[latent_channels:] -= 6.0  # log-variance channels: start nearly deterministic
        opt = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
        warmup = min(20, steps)

        def lr_lambda(step: int) -> float:
            return min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / steps)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        vae.train()
        losses: list[float] = []
        with make_progress(transient=True) as progress:
            task = progress.add_task("fitting the tiny SDXL VAE", total=steps)
            for _ in range(steps):
                idx = torch.randint(0, len(pixels), (batch_size,), generator=g)
                top, left = torch.randint(0, size - crop + 1, (2,), generator=g).tolist()
                x = _to_unit(pixels[idx, :, top : top + crop, left : left + crop])
                flip = torch.rand(batch_size, generator=g) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                if colour_augment:
                    x = colour_jitter(x, g)
                posterior = vae.encode(x).latent_dist
                rec = vae.decode(posterior.sample(generator=g)).sample
                loss = torch.nn.functional.mse_loss(rec, x) + kl_weight * posterior.kl().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                progress.update(task, advance=1, description=f"fitting the tiny SDXL VAE (loss {loss:.4f})")
        vae.eval()

        latents = []
        with torch.no_grad():
            for i in range(0, min(512, len(pixels)), 32):
                latents.append(vae.encode(_to_unit(pixels[i : min(i + 32, 512)])).latent_dist.sample(generator=g))
        std = float(torch.cat(latents).float().std())
    if not math.isfinite(std) or std <= 0:
        raise DataError(f"the fitted VAE's latents have std {std}; cannot set scaling_factor", path=str(data_dir))
    vae.register_to_config(scaling_factor=1.0 / std)
    tail = losses[-min(50, len(losses)) :]
    return {
        "data": str(data_dir),
        "images": len(paths),
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "crop": crop,
        "learning_rate": learning_rate,
        "kl_weight": kl_weight,
        "colour_augment": colour_augment,
        "final_loss": sum(tail) / len(tail),
        "reconstruction_mse_before": mse_before,
        "reconstruction_mse_after": _reconstruction_mse(vae, held_out),
        "latent_std": std,
        "scaling_factor": 1.0 / std,
    }


def build_tiny_sdxl(
    out: str | os.PathLike, seed: int = 0, fit_vae: str | os.PathLike | None = None, vae_steps: int = VAE_FIT_STEPS
) -> Path:
    """Tiny SDXL pipeline saved with `save_pretrained` (safetensors; about 2 MB).

    All weights are random unless `fit_vae` names a folder of images: then the VAE is fitted on them first
    (`fit_tiny_sdxl_vae`, `vae_steps` steps, seeded by `seed`) and `vae_fit.json` records the fit.
    """
    if fit_vae is not None:
        vae_image_paths(fit_vae)  # fail on a bad folder before building anything

    def build(tmp: Path) -> None:
        pipe = tiny_sdxl_pipeline(seed)
        if fit_vae is not None:
            summary = fit_tiny_sdxl_vae(pipe.vae, fit_vae, steps=vae_steps, seed=component_seed(seed, 1))
            write_json(tmp / VAE_FIT_FILE, summary)
        pipe.save_pretrained(tmp)

    return write_model_dir(out, "sdxl", seed, build)


def tiny_sdxl_vae_fp16_fix(seed: int = 0) -> AutoencoderKL:
    """The in-memory VAE that `build_tiny_sdxl_vae` saves: same architecture as the pipeline's, other weights."""
    with seeded(component_seed(seed, 15)):
        return tiny_sdxl_vae(force_upcast=False).eval()


def build_tiny_sdxl_vae(out: str | os.PathLike, seed: int = 0) -> Path:
    """A standalone tiny VAE compatible with the tiny SDXL pipeline, standing in for sdxl-vae-fp16-fix."""

    def build(tmp: Path) -> None:
        tiny_sdxl_vae_fp16_fix(seed).save_pretrained(tmp)

    return write_model_dir(out, "sdxl-vae", seed, build)
