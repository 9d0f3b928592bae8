"""DreamBooth + LoRA for SDXL, SD 1.5 and Flux.1 on diffusers + peft + accelerate (`vlgen train lora`).

The method and the option names are those of diffusers' `train_dreambooth_lora_sdxl.py` (and `_flux.py`);
what differs between bases - parts, conditioning, objective, export - is the base's family module
(vlgen.t2i.families), read from its model_index.json. The loop is our own so that it can resume *exactly*
and skip repeated work:
- data order: epoch e is a permutation seeded by (seed, e), grouped by aspect bucket (buckets.py); the
  position inside the epoch is saved with each checkpoint;
- every random draw of a step (flips, latent samples, noise, timesteps) comes from a generator seeded by
  (seed, epoch, batch), so a resumed run draws what the uninterrupted run drew. Checkpoints hold the
  LoRA weights, optimiser and LR-scheduler state (vlgen.checkpointing): a run killed with SIGKILL and
  resumed ends with bit-identical LoRA weights on CPU (tests/t2i/test_lora_resume.py);
- latents and frozen-text-encoder embeddings are computed once (lora_data.py).
Multi-GPU: `accelerate launch -m vlgen train lora ...` (DDP averages the LoRA gradients). The loop itself
(accumulation, checkpoints, history) is vlgen.training.loop, shared with `train caption`.
Loading a quantised base (--quantize-base) is quantize.py; scoring validation images and swapping in the
EMA weights for them, validation_metrics.py. What is left here: set-up, the loss, the loop, validation images.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vlgen.errors import ConfigError
from vlgen.fileio import check_output_dir
from vlgen.memory import release_memory
from vlgen.t2i.buckets import bucketed_batches
from vlgen.t2i.conditioning import drop_frozen, restore_frozen
from vlgen.t2i.lora_config import (
    RESUME_MAY_DIFFER,
    RESUME_PATH_KEYS,
    LoraTrainConfig,
    check_lora_layers,
    match_lora_layers,
    unet_lora_layers,
    validation_metric_keys,
)
from vlgen.t2i.lora_data import (
    FP16_VAE_HINT,
    NonFiniteError,
    TrainingData,
    class_examples,
    instance_examples,
)
from vlgen.t2i.objectives import ddpm_weights
from vlgen.t2i.quantize import check_quantize_base, load_training_components
from vlgen.t2i.validation_metrics import validate_and_score
from vlgen.training.loop import (
    LoopSettings,
    TrainingLoop,
    TrainingTask,
    main_process_log,
    make_accelerator,
    open_run,
    save_run_config,
)
from vlgen.training.schedules import build_scheduler, ignored_warmup


def check_config(cfg: LoraTrainConfig) -> None:
    """Fail before any model is loaded, naming the option and the value."""
    if not cfg.instance_data_dir:
        raise ConfigError("--instance-data-dir (--data) is required: a folder of training images")
    if not Path(cfg.instance_data_dir).is_dir():
        raise ConfigError(f"--instance-data-dir {cfg.instance_data_dir}: no such directory")
    if not cfg.output_dir:
        raise ConfigError("--output-dir (--out) is required")
    if not cfg.instance_prompt and not cfg.caption_column:
        raise ConfigError("--instance-prompt is required (the trigger phrase, e.g. 'a 3D icon in the style of TOK')")
    family = _family(cfg)
    if cfg.resolution < 8 or cfg.resolution % 8:
        raise ConfigError(
            f"--resolution must be a positive multiple of 8 (the VAE downsamples by 8), got {cfg.resolution}"
        )
    for name in ("train_batch_size", "gradient_accumulation_steps", "rank", "num_train_epochs", "checkpointing_steps"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.max_train_steps is not None and cfg.max_train_steps < 1:
        raise ConfigError(f"--max-train-steps must be at least 1, got {cfg.max_train_steps}")
    # Options first used by validation, class images or the outputs: checked now, not after training.
    for name in ("num_inference_steps", "sample_batch_size", "lr_num_cycles", "validation_steps"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("num_validation_images", "lr_warmup_steps"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(cfg, name)}")
    if cfg.with_prior_preservation and cfg.num_class_images < 1:
        raise ConfigError(f"--num-class-images must be at least 1 with prior preservation, got {cfg.num_class_images}")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"--learning-rate must be positive, got {cfg.learning_rate}")
    if cfg.snr_gamma is not None and cfg.snr_gamma <= 0:
        raise ConfigError(f"--snr-gamma must be positive, got {cfg.snr_gamma}")
    if cfg.with_prior_preservation and not cfg.class_prompt:
        raise ConfigError("--with-prior-preservation needs --class-prompt (e.g. 'a 3D icon')")
    if cfg.mixed_precision == "fp16" and (cfg.cpu or not torch.cuda.is_available()):
        raise ConfigError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on CPU")
    if cfg.use_dora and cfg.export_format == "kohya":
        raise ConfigError("--use-dora cannot be exported with --export-format kohya: kohya's LoRA format has no DoRA")
    if cfg.use_dora and cfg.train_text_encoder:
        # diffusers 0.42's load_lora_weights reads the denoiser's DoRA magnitudes but not a text encoder's
        # (transformers' loader expects another key): a file it would half-load is not written.
        raise ConfigError("--use-dora applies to the UNet/transformer only; drop --train-text-encoder or --use-dora")
    if not 0.0 <= cfg.caption_dropout_rate < 1.0:
        raise ConfigError(f"--caption-dropout-rate must be in [0, 1), got {cfg.caption_dropout_rate}")
    if not 0.0 < cfg.ema_decay < 1.0:
        raise ConfigError(f"--ema-decay must be in (0, 1), got {cfg.ema_decay}")
    metrics = validation_metric_keys(cfg)
    if metrics and cfg.num_validation_images < 1:
        raise ConfigError("--validation-metrics needs --num-validation-images of at least 1")
    if cfg.metric_for_best_model is not None and cfg.metric_for_best_model not in metrics:
        raise ConfigError(
            f"--metric-for-best-model {cfg.metric_for_best_model}: not among --validation-metrics "
            f"({', '.join(metrics) or 'none given'})"
        )
    if family is not None:
        family.check_config(cfg)
    check_lora_layers(cfg, family.name if family is not None else "sdxl")
    if cfg.use_8bit_adam:
        # bitsandbytes' AdamW8bit (on CPU too since its 0.4x multi-backend releases; the lock has 0.50)
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--use-8bit-adam needs bitsandbytes: pip install bitsandbytes, or pass --no-use-8bit-adam"
            ) from None
    if cfg.quantize_base is not None:
        check_quantize_base(cfg)
    check_output_dir(cfg.output_dir, "--output-dir")


def _family(cfg: LoraTrainConfig):
    """The base's family if it is known without loading or downloading anything (--family, a local folder's
    model_index.json, a known hub id); else None, and setup() checks the family's options once the base is here."""
    from vlgen.t2i.families import family_hint

    return family_hint(cfg.pretrained_model_name_or_path, cfg.family)


def checkpoint_lora_block(module: torch.nn.Module, *args: Any) -> Any:
    """diffusers' `_gradient_checkpointing_func` for single-process LoRA training: reentrant where it is safe.

    diffusers' default (non-reentrant `torch.utils.checkpoint`) records the forward graph and sends every
    saved tensor through a Python pack hook (3,939 per forward of the reduced SDXL UNet). The reentrant form
    runs the forward under no_grad and rebuilds the graph only in backward, which is faster (B2 timings in
    benchmarks/README.md, "What changed for checkpointing"). Its one trap is a
    block none of whose tensor inputs requires grad (the first LoRA-bearing transformer block: its input
    comes from frozen layers): reentrant would return an output without grad and the LoRA weights inside
    would silently get none. Such blocks take the non-reentrant path. Gradients equal diffusers' default to
    fp32 summation order (tests/t2i/test_lora_checkpointing.py).
    """
    from torch.utils.checkpoint import checkpoint

    reentrant = any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
    return checkpoint(module.__call__, *args, use_reentrant=reentrant)


def step_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The generator of one micro-batch: depends on where it is in training, not on what ran before."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + batch)


class _Trainable(torch.nn.Module):
    """The trainable LoRA parameters as one module (the same Parameter objects as in the UNet/text
    encoders), so checkpoints hold megabytes of adapters rather than the gigabytes of the base."""

    def __init__(self, named: dict[str, torch.nn.Parameter]) -> None:
        super().__init__()
        self.params = torch.nn.ParameterDict({k.replace(".", "__"): p for k, p in named.items()})


class _Shadow(torch.nn.Module):
    """EMA shadow weights as buffers (not parameters: the optimiser and gradient clipping never see them)."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        super().__init__()
        for i, t in enumerate(tensors):
            self.register_buffer(f"p{i}", t)


class _LoraTask(TrainingTask):
    """What is particular to DreamBooth-LoRA in the shared loop: bucketed batches, the diffusion loss (every
    random draw of a micro-batch from `step_generator`), step timings and validation images."""

    def __init__(self, trainer: LoraTrainer) -> None:
        self.trainer = trainer

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        t = self.trainer
        return bucketed_batches(t.data.bucket_of, t.global_batch, t.cfg.seed, epoch)

    def collate(self, ids: list[int], epoch: int, b: int) -> list[int]:
        # Latents and embeddings are cached: the batch is built in `loss`, from the same generator as the noise.
        return ids

    def loss(self, batch: list[int], epoch: int, b: int) -> torch.Tensor:
        return self.trainer.loss(batch, step_generator(self.trainer.cfg.seed, epoch, b))

    def check_loss(self, value: float, state: dict[str, Any], epoch: int, b: int) -> None:
        if not math.isfinite(value):
            raise NonFiniteError(
                f"the loss became {value} at step {state['global_step'] + 1} (epoch {epoch}, batch {b}). "
                f"With fp16: {FP16_VAE_HINT}; otherwise lower --learning-rate (now {self.trainer.cfg.learning_rate})"
            )

    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> None:
        self.trainer._clip_grad_norm(params)

    def after_step(self, step: int, row: dict[str, Any], state: dict[str, Any]) -> None:
        t = self.trainer
        now = time.perf_counter()
        t.step_times.append(now - t._t_step)
        if t.ema is not None:
            t.ema.step(t.trainable.parameters())
        if t.cfg.validation_prompt and t.cfg.validation_steps and step % t.cfg.validation_steps == 0:
            row.update(validate_and_score(t, f"step-{step:06d}", state))
        t._t_step = time.perf_counter()  # validation is not part of the next step


class LoraTrainer:
    def __init__(self, cfg: LoraTrainConfig) -> None:
        check_config(cfg)
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.acc = make_accelerator(
            cpu=cfg.cpu,
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            project_dir=self.out,
        )
        self.continues_a_run = open_run(
            self.acc, cfg, self.out, option="--output-dir", may_differ=RESUME_MAY_DIFFER, path_keys=RESUME_PATH_KEYS
        )
        self.instances = instance_examples(cfg)  # decodes every image: broken files fail here
        self.timings: dict[str, float] = {}

    def log(self, msg: str) -> None:
        main_process_log(self.acc)(msg)

    # ------------------------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        cfg, acc = self.cfg, self.acc
        torch.manual_seed(cfg.seed)  # peft's gaussian init of lora_A draws from the global generator
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
        self.parts = parts = load_training_components(cfg, self.weight_dtype)
        self.family = family = parts.family
        family.check_config(cfg)  # again: a hub base's family is known only now
        check_lora_layers(cfg, family.name)
        targets = unet_lora_layers(cfg, family.default_lora_targets)
        # --lora-layers: every name must match a module
        matched = match_lora_layers(parts.denoiser, targets, what=family.denoiser_label)
        if cfg.export_format == "kohya":
            family.check_kohya_paths(sorted({p for paths in matched.values() for p in paths}))
        classes = []
        if cfg.with_prior_preservation:
            from vlgen.t2i.prior import ensure_class_images

            class_dir = Path(cfg.class_data_dir or self.out / "class_images")
            for m in parts.frozen_modules():
                m.to(acc.device)
            if acc.is_main_process:
                ensure_class_images(
                    class_dir, cfg.class_prompt or "", cfg.num_class_images, parts,
                    resolution=cfg.resolution, seed=cfg.seed, num_inference_steps=cfg.num_inference_steps,
                    batch_size=cfg.sample_batch_size, device=acc.device, log=self.log,
                    call_kwargs=family.pipeline_call_kwargs(cfg),
                )  # fmt: skip
            acc.wait_for_everyone()
            classes = class_examples(class_dir, cfg.class_prompt or "", cfg.num_class_images)

        for m in parts.frozen_modules():
            m.requires_grad_(False)
            # SDXL base's VAE (force_upcast) stays fp32 always: in fp16 its activations overflow to NaN.
            keep_fp32 = m is parts.vae and parts.vae.config.force_upcast
            # --quantize-base: the denoiser was loaded in the training dtype (diffusers refuses to cast a quantised
            # model); the LoRA layers peft adds to its quantised Linears are made fp32 below, as all adapters.
            quantised = getattr(m, "is_quantized", False)
            m.to(acc.device)
            if not keep_fp32 and not quantised and self.weight_dtype != torch.float32:
                m.to(dtype=self.weight_dtype)
        torch.manual_seed(cfg.seed)
        # lora_alpha = rank: scale 1, as diffusers' script; init "gaussian" for lora_A, zeros for lora_B,
        # so the adapted model starts out exactly equal to the base.
        parts.denoiser.add_adapter(
            LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, init_lora_weights="gaussian", target_modules=list(targets),
                       use_dora=cfg.use_dora)
        )  # fmt: skip
        # The text encoders `--train-text-encoder` adapts (SDXL both, SD 1.5 its one, Flux CLIP only: T5 stays frozen)
        lora_tes = {n: parts.text_encoders[family.text_encoder_names.index(n)] for n in family.lora_text_encoders}
        if cfg.train_text_encoder:
            # peft's own API, not transformers' `add_adapter`: that wrapper gates on a minimum peft version
            # (transformers 5.24 wants peft >= 0.22, not released yet) and does nothing more than this call.
            # Same adapter name ("default") and parameter names, so saving and checkpoints are unchanged.
            te_config = LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, init_lora_weights="gaussian",
                                   target_modules=list(family.text_encoder_lora_targets),
                                   use_dora=cfg.use_dora)  # fmt: skip
            for te in lora_tes.values():
                inject_adapter_in_model(copy.deepcopy(te_config), te, adapter_name="default")
        if cfg.gradient_checkpointing:
            # Several processes (DDP, DeepSpeed) keep diffusers' default: reentrant backward passes run the
            # parameter hooks those wrappers rely on from inside a nested backward.
            parts.denoiser.enable_gradient_checkpointing(checkpoint_lora_block if acc.num_processes == 1 else None)
            if cfg.train_text_encoder:
                for te in lora_tes.values():  # transformers 5 renamed the method
                    getattr(te, "activation_checkpointing_enable", te.gradient_checkpointing_enable)()
        self.trained = {family.denoiser_name: parts.denoiser}
        if cfg.train_text_encoder:
            self.trained.update(lora_tes)
        named: dict[str, torch.nn.Parameter] = {}
        for comp, model in self.trained.items():
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.data = p.data.float()  # adapters train in fp32 even under fp16/bf16 autocast
                    named[f"{comp}.{n}"] = p
        self.trainable = _Trainable(named)
        self.ema = None
        if cfg.use_ema:
            from diffusers.training_utils import EMAModel

            # The shadow weights are buffers of the checkpointed module, so checkpoints save and restore them in
            # place (EMAModel keeps references to the same tensors); its step count is the global step.
            self.ema = EMAModel(list(self.trainable.parameters()), decay=cfg.ema_decay)
            self.trainable.ema = _Shadow(self.ema.shadow_params)

        self.data = TrainingData(cfg, parts, self.instances, classes, acc.device)
        t0 = time.perf_counter()
        self.data.fill_caches()
        self.timings["caches_s"] = time.perf_counter() - t0
        drop_frozen(parts, vae=cfg.cache_latents, text_encoders=self.data.caches_text)
        release_memory()
        self._build_optimizer()
        if acc.state.deepspeed_plugin is not None:  # no dataloader to read the micro-batch size from
            if cfg.gradient_accumulation_steps != 1:
                raise ConfigError("with DeepSpeed, set gradient accumulation in its config, not with this option")
            acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.train_batch_size
        self.unet, self.optimizer = acc.prepare(parts.denoiser, self.optimizer)  # the denoiser (UNet or transformer)
        self.text_encoders = list(parts.text_encoders)
        if cfg.train_text_encoder:
            prepared = acc.prepare(*lora_tes.values())
            prepared = [prepared] if len(lora_tes) == 1 else list(prepared)
            for name, model in zip(lora_tes, prepared, strict=True):
                self.text_encoders[family.text_encoder_names.index(name)] = model

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        unet_params = [p for p in self.parts.denoiser.parameters() if p.requires_grad]
        groups = [{"params": unet_params, "lr": cfg.learning_rate, "weight_decay": cfg.adam_weight_decay}]
        if cfg.train_text_encoder:
            te = [p for name, m in self.trained.items() if name != self.family.denoiser_name for p in m.parameters()]
            groups.append(
                {"params": [p for p in te if p.requires_grad], "lr": cfg.text_encoder_lr,
                 "weight_decay": cfg.adam_weight_decay_text_encoder}
            )  # fmt: skip
        if cfg.use_8bit_adam:
            import bitsandbytes as bnb

            self.optimizer = bnb.optim.AdamW8bit(groups, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon)
        else:
            # foreach: one multi-tensor kernel per update rather than a Python loop over the ~270 LoRA
            # tensors (the default on CUDA already; on CPU it halves the optimiser's share of a step).
            self.optimizer = torch.optim.AdamW(
                groups, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, foreach=True
            )
        n_batches = len(bucketed_batches(self.data.bucket_of, self.global_batch, cfg.seed, 0))
        self.steps_per_epoch = math.ceil(n_batches / cfg.gradient_accumulation_steps)
        self.total_steps = cfg.max_train_steps or cfg.num_train_epochs * self.steps_per_epoch
        self.lr_scheduler = build_scheduler(
            cfg.lr_scheduler, self.optimizer, warmup_steps=cfg.lr_warmup_steps, total_steps=self.total_steps,
            num_cycles=cfg.lr_num_cycles, power=cfg.lr_power,
        )  # fmt: skip
        if note := ignored_warmup(cfg.lr_scheduler, cfg.lr_warmup_steps):
            self.log(f"[yellow]{note}[/]")

    @property
    def global_batch(self) -> int:
        return self.cfg.train_batch_size * self.acc.num_processes

    # ------------------------------------------------------------------------------------------- a step
    def loss(self, ids: list[int], g: torch.Generator) -> torch.Tensor:
        """The DreamBooth loss of one micro-batch: the family's objective (DDPM noise prediction, Min-SNR
        weighted, or flow matching), + the prior term."""
        cfg, parts, family = self.cfg, self.parts, self.family
        batch = self.data.batch(ids, g)
        latents = batch["latents"].to(self.acc.device, self.weight_dtype)  # (n, C, h, w); n = 2B with prior
        noisy = family.make_noisy(latents, g, cfg, parts.noise_scheduler)
        if "cond" in batch:
            cond = batch["cond"]
        else:
            with torch.enable_grad() if cfg.train_text_encoder else torch.no_grad():
                cond = family.encode(self.text_encoders, batch["input_ids"], grad=cfg.train_text_encoder)
        pred = family.predict(self.unet, noisy, cond, batch, cfg)  # (n, C, h, w)
        target, weights = noisy.target, noisy.weights
        prior_loss = None
        n = pred.shape[0]
        if self.data.classes:  # first half instance, second half class (lora_data.batch)
            n //= 2
            pred, pred_prior = pred.chunk(2)
            target, target_prior = target.chunk(2)
            if weights is None:
                prior_loss = F.mse_loss(pred_prior.float(), target_prior.float())
            else:
                per = F.mse_loss(pred_prior.float(), target_prior.float(), reduction="none").mean(dim=(1, 2, 3))
                prior_loss = (per * weights[n:].float()).mean()
        if family.objective_kind == "ddpm":
            weights = ddpm_weights(noisy, n, cfg, parts.noise_scheduler)
        elif weights is not None:
            weights = weights[:n]
        if weights is None:
            loss = F.mse_loss(pred.float(), target.float())
        else:
            per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # (n,)
            loss = (per_sample * weights.float()).mean()
        if prior_loss is not None:
            loss = loss + cfg.prior_loss_weight * prior_loss
        return loss

    # ------------------------------------------------------------------------------------------- the loop
    def train(self) -> dict[str, Any]:
        cfg, acc = self.cfg, self.acc
        t_start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        save_run_config(acc, cfg, self.out)
        if not hasattr(self, "parts"):
            self.setup()
        loop = TrainingLoop(
            acc,
            LoopSettings(
                seed=cfg.seed,
                gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                max_grad_norm=cfg.max_grad_norm,
                checkpointing_steps=cfg.checkpointing_steps,
                checkpoints_total_limit=cfg.checkpoints_total_limit,
                resume_from_checkpoint=cfg.resume_from_checkpoint,
            ),
            ckpt_root=self.ckpt_root,
            models=[self.unet, *(self.text_encoders if cfg.train_text_encoder else [])],
            checkpoint_module=self.trainable,
            params=[p for p in self.trainable.parameters() if p.requires_grad],
            optimizer=self.optimizer,
            scheduler=self.lr_scheduler,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            log=self.log,
        )
        state = loop.resume(loop.new_state(), self.continues_a_run)
        if self.ema is not None:
            self.ema.optimization_step = state["global_step"]
        self.timings["setup_s"] = time.perf_counter() - t_start
        self.step_times: list[float] = []
        self._t_step = self.timings["loop_start"] = time.perf_counter()
        state = loop.run(_LoraTask(self), state)
        acc.wait_for_everyone()
        release_memory()  # the last step's activations, before the outputs (matplotlib, validation) load
        summary: dict[str, Any] = {}
        if acc.is_main_process:
            from vlgen.t2i.outputs import write_outputs

            summary = write_outputs(self, state, time.perf_counter() - t_start)
        acc.end_training()
        return summary

    def _clip_grad_norm(self, params: list[torch.nn.Parameter]) -> None:
        """accelerate's clip_grad_norm_, with torch's multi-tensor (foreach) norm where that is all it does
        (one process or DDP): on CPU torch would otherwise loop over the LoRA tensors one by one."""
        from accelerate.utils import DistributedType

        acc = self.acc
        if acc.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
            acc.unscale_gradients()
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm, foreach=True)
        else:  # DeepSpeed, FSDP, XLA: accelerate knows how
            acc.clip_grad_norm_(params, self.cfg.max_grad_norm)

    # ------------------------------------------------------------------------------------------- inference
    def pipeline(self):
        """The family's pipeline (StableDiffusionXLPipeline, ...) over the trained (adapted) components, for
        validation and tests."""
        restore_frozen(self.parts, self.acc.device, self.weight_dtype)
        encoders = [
            self.acc.unwrap_model(m) if self.cfg.train_text_encoder and n in self.trained else p
            for n, m, p in zip(
                self.family.text_encoder_names, self.text_encoders, self.parts.text_encoders, strict=True
            )
        ]
        return self.family.pipeline(self.parts, denoiser=self.acc.unwrap_model(self.unet), text_encoders=encoders)

    @torch.no_grad()
    def validate(self, name: str, prompt: str | None = None) -> list[Path]:
        """`num_validation_images` images of the validation prompt into OUT/validation/NAME/, seeds seed+i."""
        cfg = self.cfg
        prompt = prompt or cfg.validation_prompt or cfg.instance_prompt
        if not self.acc.is_main_process or not prompt or cfg.num_validation_images < 1:
            return []
        pipe = self.pipeline()
        models = [getattr(pipe, n) for n in (self.family.denoiser_name, *self.family.text_encoder_names)]
        was_training = [m.training for m in models]
        for m in models:
            m.eval()
        out_dir = self.out / "validation" / name
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        with self.acc.autocast():
            for i in range(cfg.num_validation_images):
                g = torch.Generator().manual_seed(cfg.seed + i)
                image = pipe(prompt, num_inference_steps=cfg.num_inference_steps, generator=g,
                             height=cfg.resolution, width=cfg.resolution,
                             **self.family.pipeline_call_kwargs(cfg)).images[0]  # fmt: skip
                paths.append(out_dir / f"{i}.png")
                image.save(paths[-1])
        for m, t in zip(models, was_training, strict=True):
            m.train(t)
        return paths


def train_lora(cfg: LoraTrainConfig) -> dict[str, Any]:
    """Library entry point behind `vlgen train lora`: DreamBooth-LoRA fine-tuning of SDXL as `cfg` describes.

    Writes `cfg.output_dir` as the command does (`pytorch_lora_weights.safetensors` - diffusers keys, for
    `text_to_image(lora=...)` or `pipeline.load_lora_weights` -, a model card, validation images,
    `config.yaml`, `history.csv`, `curves.png`) and returns the run's summary (empty on processes other than 0).

    Example::

        import vlgen

        cfg = vlgen.LoraTrainConfig(
            pretrained_model_name_or_path="stabilityai/stable-diffusion-xl-base-1.0",
            pretrained_vae_model_name_or_path="madebyollin/sdxl-vae-fp16-fix",
            instance_data_dir="data/3d_icons", output_dir="runs/3dicon",
            instance_prompt="a 3D icon in the style of TOK", caption_column="text",
            resolution=1024, train_batch_size=1, max_train_steps=500, rank=4, learning_rate=1e-4,
        )
        summary = vlgen.train_lora(cfg)
        images = vlgen.text_to_image(["a 3D icon of a rocket in the style of TOK"], lora="runs/3dicon")
    """
    return LoraTrainer(cfg).train()
